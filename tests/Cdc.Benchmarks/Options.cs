using System.Globalization;

namespace Cdc.Benchmarks;

/// <summary>Command-line settings of a suite run (see README.md).</summary>
sealed class Options
{
    public bool Quick { get; private set; }
    public int Events { get; private set; } = 1_000_000;
    public int Warmup { get; private set; } = 100_000;
    public int RowsPerTransaction { get; private set; } = 100;
    public int Writers { get; private set; } = 4;
    public int WolverineEvents { get; private set; } = -1; // -1: same as Events
    public double[] Rates { get; private set; } = [1_000, 5_000, 20_000];
    public int LatencySeconds { get; private set; } = 60;
    public int LatencyRowsPerTransaction { get; private set; } = 10;
    public int BackpressureEvents { get; private set; } = 1_000_000;
    public int MaxInFlightEvents { get; private set; } = 5_000; // the worker's default
    public long MaxInFlightBytes { get; private set; } = 64L * 1024 * 1024;
    public int Brokers { get; private set; } = 3;
    public int Partitions { get; private set; } = 6;
    public string Out { get; private set; } = "bench.json";
    public HashSet<string> Skip { get; } = new(StringComparer.OrdinalIgnoreCase);
    public bool Echo { get; private set; }
    /// <summary>Extra environment for every worker started (e.g. DOTNET_gcServer=0), for experiments.</summary>
    public Dictionary<string, string?> WorkerEnv { get; } = [];
    /// <summary>Records the worker with perf (-g) during the measured part of the connector's drain, into this file.</summary>
    public string? PerfFile { get; private set; }

    public static Options Parse(string[] args)
    {
        var o = new Options();
        if (args.Contains("--modes"))
        {
            // Replication mode vs polling mode in one short run: the backlog drains only (a, b, c).
            o.Events = 500_000;
            o.Warmup = 50_000;
            foreach (var phase in new[] { "wolverine", "latency", "backpressure" })
                o.Skip.Add(phase);
        }
        var quick = args.Contains("--quick");
        if (quick)
        {
            o.Quick = true;
            o.Events = 50_000;
            o.Warmup = 20_000;
            o.LatencySeconds = 10;
            o.BackpressureEvents = 100_000;
        }
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int NextInt() => int.Parse(Next().Replace("_", ""), CultureInfo.InvariantCulture);
            switch (args[i])
            {
                case "--quick" or "--modes": break;
                case "--events": o.Events = NextInt(); break;
                case "--warmup": o.Warmup = NextInt(); break;
                case "--rows-per-tx": o.RowsPerTransaction = NextInt(); break;
                case "--writers": o.Writers = NextInt(); break;
                case "--wolverine-events": o.WolverineEvents = NextInt(); break;
                case "--rates":
                    o.Rates = Next().Split(',').Select(r => double.Parse(r.Replace("_", ""), CultureInfo.InvariantCulture)).ToArray();
                    break;
                case "--latency-seconds": o.LatencySeconds = NextInt(); break;
                case "--latency-rows-per-tx": o.LatencyRowsPerTransaction = NextInt(); break;
                case "--backpressure-events": o.BackpressureEvents = NextInt(); break;
                case "--max-in-flight-events": o.MaxInFlightEvents = NextInt(); break;
                case "--max-in-flight-bytes": o.MaxInFlightBytes = long.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--brokers": o.Brokers = NextInt(); break;
                case "--partitions": o.Partitions = NextInt(); break;
                case "--out": o.Out = Next(); break;
                case "--skip":
                    foreach (var s in Next().Split(',', StringSplitOptions.RemoveEmptyEntries))
                        o.Skip.Add(s.Trim());
                    break;
                case "--echo": o.Echo = true; break;
                case "--worker-env":
                    var kv = Next().Split('=', 2);
                    o.WorkerEnv[kv[0]] = kv.Length > 1 ? kv[1] : "";
                    break;
                case "--perf": o.PerfFile = Path.GetFullPath(Next()); break;
                default: throw new ArgumentException($"unknown option {args[i]} (see tests/Cdc.Benchmarks/README.md)");
            }
        }
        if (o.WolverineEvents < 0)
            o.WolverineEvents = o.Events;
        if (o.Warmup % 1000 != 0 || o.Warmup < 1000)
            throw new ArgumentException("--warmup must be a multiple of 1000 (the polling mode's default batch), at least 1000");
        return o;
    }

    public bool Runs(string phase) => !Skip.Contains(phase);

    public Dictionary<string, object> Describe() => new()
    {
        ["quick"] = Quick,
        ["events"] = Events,
        ["warmup"] = Warmup,
        ["rows_per_transaction"] = RowsPerTransaction,
        ["writers"] = Writers,
        ["wolverine_events"] = WolverineEvents,
        ["rates"] = Rates,
        ["latency_seconds"] = LatencySeconds,
        ["latency_rows_per_transaction"] = LatencyRowsPerTransaction,
        ["backpressure_events"] = BackpressureEvents,
        ["max_in_flight_events"] = MaxInFlightEvents,
        ["max_in_flight_bytes"] = MaxInFlightBytes,
        ["brokers"] = Brokers,
        ["partitions"] = Partitions,
        ["skip"] = Skip.ToArray(),
        ["worker_env"] = WorkerEnv.Select(kv => $"{kv.Key}={kv.Value}").ToArray(),
    };
}
