using System.Globalization;

namespace Cdc.Soak;

/// <summary>Command line of the soak: <c>--minutes N --seed N --rate events/s --out file.json --writers N --log-dir DIR</c>.</summary>
sealed record SoakOptions
{
    public double Minutes { get; init; } = 10;
    public int Seed { get; init; } = Environment.TickCount & 0x7fffffff;
    public bool SeedGiven { get; init; }
    /// <summary>Outbox rows per second over all writers (rolled-back rows included). The mock broker reads back ~4k/s per consumer.</summary>
    public int Rate { get; init; } = 300;
    public int Writers { get; init; } = 4;
    public string? Out { get; init; }
    public string? LogDir { get; init; }
    public int MessageTimeoutMs { get; init; } = 5000;
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromMinutes(3);

    public const string Usage = """
        Chaos soak: the real Cdc worker (a child process) on a throwaway PostgreSQL and librdkafka's Kafka-protocol
        mock cluster (3 brokers, in this process), under mixed load, with a random fault every 10-40 s.

          dotnet run -c Release --project tests/Cdc.Soak -- [options]

          --minutes N     how long faults are injected (default 10; fractions allowed)
          --seed N        seed of the fault schedule and the load's shape (default: random, printed)
          --rate N        outbox rows per second over all writers (default 300)
          --writers N     concurrent writer tasks (default 4)
          --out FILE      also write the summary as JSON to FILE
          --log-dir DIR   where the worker log, slot samples and summary go (default artifacts/soak/<time>-seed<N>)

        Exit code 0 only when nothing committed was lost, nothing else arrived (rolled-back rows, UPDATEs, dead letters,
        malformed or misrouted records), per-aggregate order held, the worker never exited on its own, every SIGTERM
        exit was 0 within 30 s, the slot caught up at the end, and the reader saw every offset; 1 otherwise; 2 on bad usage.
        """;

    public static SoakOptions Parse(string[] args)
    {
        var options = new SoakOptions();
        for (var i = 0; i < args.Length; i++)
        {
            var name = args[i];
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{name} needs a value");
            options = name switch
            {
                "--minutes" => options with { Minutes = Positive(name, double.Parse(Value(), CultureInfo.InvariantCulture)) },
                "--seed" => options with { Seed = int.Parse(Value(), CultureInfo.InvariantCulture), SeedGiven = true },
                "--rate" => options with { Rate = (int)Positive(name, int.Parse(Value(), CultureInfo.InvariantCulture)) },
                "--writers" => options with { Writers = (int)Positive(name, int.Parse(Value(), CultureInfo.InvariantCulture)) },
                "--out" => options with { Out = Value() },
                "--log-dir" => options with { LogDir = Value() },
                _ => throw new ArgumentException($"unknown option {name}"),
            };
        }
        return options;

        static double Positive(string name, double value) =>
            value > 0 ? value : throw new ArgumentException($"{name} must be positive");
    }
}
