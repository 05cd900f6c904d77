using Cdc.Soak;

if (args.Contains("--help") || args.Contains("-h"))
{
    Console.WriteLine(SoakOptions.Usage);
    return 0;
}
SoakOptions options;
try
{
    options = SoakOptions.Parse(args);
}
catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
{
    Console.Error.WriteLine($"soak: {e.Message}");
    Console.Error.WriteLine(SoakOptions.Usage);
    return 2;
}
return await SoakRun.RunAsync(options);
