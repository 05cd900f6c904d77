using Cdc.Benchmarks;

// Modes: the suite (default), the micro-benchmarks, and the child processes the suite starts.
return args.FirstOrDefault() switch
{
    "--broker" => BrokerMode.Run(args[1..]),
    "--wolverine" => await WolverineMode.RunAsync(args[1..]),
    "--micro" => MicroMode.Run(args[1..]),
    "--footprint" => await Footprint.RunAsync(args[1..]),
    "--help" or "-h" => Help(),
    _ => await new Suite(Options.Parse(args)).RunAsync(),
};

static int Help()
{
    Console.WriteLine("""
        dotnet run -c Release --project tests/Cdc.Benchmarks -- [--quick] [--events N] [--out bench.json] [options]
        dotnet run -c Release --project tests/Cdc.Benchmarks -- --modes [--out modes.json]   (replication vs polling mode)
        dotnet run -c Release --project tests/Cdc.Benchmarks -- --micro [--quick]
        dotnet run -c Release --project tests/Cdc.Benchmarks -- --footprint [--quick] [--native PATH] [--only jit,native] [--add NAME=BASE --env NAME:KEY=VALUE]
        See tests/Cdc.Benchmarks/README.md for every option.
        """);
    return 0;
}
