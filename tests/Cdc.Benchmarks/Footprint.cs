using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Cdc.Embedded;

namespace Cdc.Benchmarks;

/// <summary>
/// <c>--footprint</c>: every figure of issue 11 (what one connector costs at rest, at start, in a burst and draining), for
/// the JIT worker (<c>dotnet Cdc.Worker.dll</c>) and the NativeAOT one (what the image ships) side by side, against
/// <c>pg_recvlogical</c> on the same stream, in one run. The workload is the issue's: aggregate types order, payment and
/// shipment (3 topics × 6 partitions, replication factor 3), jsonb payloads of about 150 bytes, 100 rows per
/// transaction. The workers run with their defaults (nothing but the addresses, slot and publication is set).
/// See README.md, "Footprint".
/// </summary>
static partial class Footprint
{
    const string Rid = "linux-x64";
    const string Recv = "pg_recvlogical";

    public static async Task<int> RunAsync(string[] args)
    {
        var s = FootprintSettings.Parse(args);
        var total = Stopwatch.StartNew();
        var machine = Suite.Machine();
        var variants = await VariantsAsync(s);
        Say($"Footprint ({(s.Quick ? "quick" : "full")}): {string.Join("; ", variants.Select(v => $"{v.Name} = {v.Command}{v.EnvText}"))}; " +
            $"commit {machine["commit"]}, JIT build {WorkerBinary.Configuration}; load {Proc.LoadAverage()}");

        await using var pg = await EmbeddedPostgres.StartAsync(new EmbeddedPostgresOptions
        {
            Fsync = true, // and synchronous_commit on: commits are durable, as in production
            MaxReplicationSlots = 48,
            Settings = new Dictionary<string, string>
            {
                ["shared_buffers"] = "512MB",
                ["max_wal_size"] = "8GB",
                ["checkpoint_timeout"] = "30min",
                // The paused-burst phase keeps stopped readers connected for longer than the default 60 s allows.
                ["wal_sender_timeout"] = "5min",
            },
        });
        using var broker = await Broker.StartAsync(3);
        foreach (var type in Database.ThreeTopicTypes)
            await broker.CommandAsync($"topic outbox.event.{type} 6 3");
        await broker.CommandAsync("topic outbox.dlq 1 3");
        await broker.CommandAsync("topic cdc.checkpoints 1 3");
        var db = new Database(pg.ConnectionString, s.Workload);
        await db.CreateSchemaAsync();
        machine["postgres"] = (string?)await db.ScalarAsync("SELECT version()");
        var run = new FootprintRun(s, pg, broker, db, variants);
        run.Result.Machine = machine;
        run.Result.Settings = s;
        run.Result.Variants = [.. variants.Select(v => new VariantInfo(v.Name, v.Command, v.EnvText))];

        await run.RunAsync();
        machine["total_seconds"] = Math.Round(total.Elapsed.TotalSeconds);
        machine["load_end"] = Proc.LoadAverage();
        var report = FootprintReport.Table(run.Result);
        Console.WriteLine();
        Console.WriteLine(report);
        run.Result.Report = report;
        await File.WriteAllTextAsync(s.Out, JsonSerializer.Serialize(run.Result, new JsonSerializerOptions
        {
            WriteIndented = true,
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        }));
        Say($"Wrote {Path.GetFullPath(s.Out)} ({total.Elapsed.TotalMinutes:0.0} min in all)");
        return 0;
    }

    internal static void Say(string text) => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {text}");

    /// <summary>jit and native (published first unless --native is given), then the --add variants.</summary>
    static async Task<List<Variant>> VariantsAsync(FootprintSettings s)
    {
        var wanted = (string name) => s.Only.Count == 0 || s.Only.Contains(name);
        string? native = null;
        async Task<string> Native() => native ??= s.Native ?? await PublishNativeAsync();
        var list = new List<Variant>();
        var bases = new List<(string Name, string Base)> { ("jit", "jit"), ("native", "native") };
        bases.AddRange(s.Added);
        foreach (var (name, @base) in bases)
        {
            if (!wanted(name))
                continue;
            var (file, args) = @base switch
            {
                "jit" => ("dotnet", (string[])[WorkerBinary.Path()]),
                "native" => (await Native(), []),
                _ when @base.EndsWith(".dll", StringComparison.Ordinal) => ("dotnet", [Path.GetFullPath(@base)]),
                _ => (Path.GetFullPath(@base), []),
            };
            var env = new Dictionary<string, string?>(s.WorkerEnv);
            foreach (var (variant, key, value) in s.VariantEnv)
                if (variant == name)
                    env[key] = value;
            list.Add(new Variant(name, file, args, env));
        }
        if (list.Count == 0)
            throw new ArgumentException("no variant left to run (--only)");
        return list;
    }

    /// <summary>Publishes the NativeAOT worker (incremental: quick when nothing changed) into artifacts/native-worker.</summary>
    static async Task<string> PublishNativeAsync()
    {
        var output = Path.Combine(WorkerBinary.RepositoryRoot(), "artifacts", "native-worker");
        Say($"Publishing the NativeAOT worker into {output} (dotnet publish src/Cdc.Worker -c Release -r {Rid} -p:PublishAot=true)");
        var clock = Stopwatch.StartNew();
        using var publish = Child.Start("publish", "dotnet",
            ["publish", Path.Combine(WorkerBinary.RepositoryRoot(), "src", "Cdc.Worker"), "-c", "Release", "-r", Rid, "-p:PublishAot=true", "-o", output]);
        var code = await publish.WaitForExitAsync(TimeSpan.FromMinutes(20));
        if (code != 0)
            throw new InvalidOperationException($"dotnet publish failed ({code}):\n{publish.Tail(40)}");
        Say($"   published in {clock.Elapsed.TotalSeconds:0} s");
        return Path.Combine(output, "Cdc.Worker");
    }
}

/// <summary>A worker build under test: how it is started and its extra environment.</summary>
sealed record Variant(string Name, string File, string[] Args, Dictionary<string, string?> Env)
{
    public string Command => Text.Join([File, .. Args]);
    public string EnvText => Env.Count == 0 ? "" : " with " + string.Join(' ', Env.Select(kv => $"{kv.Key}={kv.Value}"));
}

sealed record VariantInfo(string Name, string Command, string Environment);

/// <summary>A running worker: its process, its /metrics address, and its slot.</summary>
sealed class RunningWorker : IDisposable
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public required Variant Variant { get; init; }
    public required Child Child { get; init; }
    public required string Slot { get; init; }
    public string? Url { get; set; }
    public int Pid => Child.Pid;
    public bool HasExited => Child.HasExited;
    public double CpuSeconds() => Proc.CpuSeconds(Pid);

    public async Task<Metrics> ScrapeAsync() => Metrics.Parse(await Http.GetStringAsync(Url + "/metrics"));

    public Task<int> TerminateAsync()
    {
        if (!Child.HasExited)
        {
            try
            {
                Proc.Signal(Pid, Proc.SigCont); // a stopped process handles SIGTERM only once continued
            }
            catch (InvalidOperationException)
            {
            }
        }
        return Child.TerminateAsync(TimeSpan.FromSeconds(40));
    }

    public void Dispose()
    {
        Child.Kill();
        Child.Dispose();
    }
}

/// <summary>Command-line settings of <c>--footprint</c> (see README.md).</summary>
sealed class FootprintSettings
{
    public bool Quick { get; private set; }
    public int Starts { get; private set; } = 5;
    public int Warmup { get; private set; } = 5_000;
    public int IdleSeconds { get; private set; } = 30;
    public double Rate { get; private set; } = 1_000;
    public int RateSeconds { get; private set; } = 60;
    public int RateRowsPerTransaction { get; private set; } = 10;
    public int Burst { get; private set; } = 200_000;
    public int DrainEvents { get; private set; } = 1_000_000;
    public int DrainWarmup { get; private set; } = 100_000;
    public int DrainRepeat { get; private set; } = 1;
    /// <summary>Seconds to wait after setting up the servers, printing a worker's environment (experiments by hand).</summary>
    public int HoldSeconds { get; private set; }
    public int BackpressureEvents { get; private set; } = 1_000_000;
    public int RowsPerTransaction { get; private set; } = 100;
    /// <summary>Issue 11's rows (three topics, about 150 B of jsonb), or the suite's (one topic, about 215 B).</summary>
    [JsonConverter(typeof(JsonStringEnumConverter<Workload>))]
    public Workload Workload { get; private set; } = Workload.ThreeTopics;
    public int Writers { get; private set; } = 4;
    public string? Native { get; private set; }
    public string Out { get; private set; } = "footprint.json";
    [JsonIgnore] public bool Echo { get; private set; }
    public Dictionary<string, string?> WorkerEnv { get; } = [];
    [JsonIgnore] public List<(string Variant, string Key, string? Value)> VariantEnv { get; } = [];
    [JsonIgnore] public List<(string Name, string Base)> Added { get; } = [];
    public HashSet<string> Only { get; } = new(StringComparer.Ordinal);
    /// <summary>Ratio columns of the table, "A/B" (variant names); default: every variant over the first.</summary>
    public List<string> Ratios { get; } = [];
    public HashSet<string> Skip { get; } = new(StringComparer.OrdinalIgnoreCase);
    /// <summary>Folder for dotnet-counters and dotnet-trace files of the JIT variants' measured windows (profiling runs only).</summary>
    public string? ProfileDirectory { get; private set; }
    public string ProfileKinds { get; private set; } = "counters";

    public bool Runs(string phase) => !Skip.Contains(phase);

    public static FootprintSettings Parse(string[] args)
    {
        var s = new FootprintSettings();
        if (args.Contains("--quick"))
        {
            s.Quick = true;
            s.Starts = 3;
            s.IdleSeconds = 10;
            s.RateSeconds = 15;
            s.Burst = 50_000;
            s.DrainEvents = 200_000;
            s.DrainWarmup = 20_000;
            s.BackpressureEvents = 100_000;
        }
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int NextInt() => int.Parse(Next().Replace("_", ""), CultureInfo.InvariantCulture);
            switch (args[i])
            {
                case "--quick": break;
                case "--starts": s.Starts = NextInt(); break;
                case "--warmup": s.Warmup = NextInt(); break;
                case "--idle-seconds": s.IdleSeconds = NextInt(); break;
                case "--rate": s.Rate = NextInt(); break;
                case "--rate-seconds": s.RateSeconds = NextInt(); break;
                case "--rate-rows-per-tx": s.RateRowsPerTransaction = NextInt(); break;
                case "--burst": case "--backlog": s.Burst = NextInt(); break;
                case "--drain-events": s.DrainEvents = NextInt(); break;
                case "--drain-warmup": s.DrainWarmup = NextInt(); break;
                case "--workload":
                    s.Workload = Next() switch
                    {
                        "three-topics" => Workload.ThreeTopics,
                        "suite" => Workload.Suite,
                        var w => throw new ArgumentException($"--workload {w}: three-topics or suite"),
                    };
                    break;
                case "--ratio": s.Ratios.Add(Next()); break;
                case "--hold": s.HoldSeconds = NextInt(); break;
                case "--drain-repeat": s.DrainRepeat = Math.Max(1, NextInt()); break;
                case "--backpressure-events": s.BackpressureEvents = NextInt(); break;
                case "--rows-per-tx": s.RowsPerTransaction = NextInt(); break;
                case "--writers": s.Writers = NextInt(); break;
                case "--native": s.Native = Path.GetFullPath(Next()); break;
                case "--only": foreach (var v in Next().Split(',', StringSplitOptions.RemoveEmptyEntries)) s.Only.Add(v); break;
                case "--skip": foreach (var p in Next().Split(',', StringSplitOptions.RemoveEmptyEntries)) s.Skip.Add(p); break;
                case "--out": s.Out = Next(); break;
                case "--echo": s.Echo = true; break;
                case "--worker-env":
                    var kv = Next().Split('=', 2);
                    s.WorkerEnv[kv[0]] = kv.Length > 1 ? kv[1] : "";
                    break;
                case "--add":
                    // NAME=BASE: another variant, BASE being jit, native, a Cdc.Worker.dll or a native binary.
                    var add = Next().Split('=', 2);
                    if (add.Length != 2 || add[0] is "jit" or "native" || add[0].Contains(':'))
                        throw new ArgumentException("--add wants NAME=jit|native|PATH with a new NAME");
                    s.Added.Add((add[0], add[1]));
                    break;
                case "--env":
                    // VARIANT:KEY=VALUE: environment of one variant only.
                    var text = Next();
                    var colon = text.IndexOf(':');
                    var eq = text.IndexOf('=', Math.Max(colon, 0));
                    if (colon <= 0 || eq < 0)
                        throw new ArgumentException("--env wants VARIANT:KEY=VALUE");
                    s.VariantEnv.Add((text[..colon], text[(colon + 1)..eq], text[(eq + 1)..]));
                    break;
                case "--profile": s.ProfileDirectory = Path.GetFullPath(Next()); break;
                case "--profile-kinds": s.ProfileKinds = Next(); break;
                default: throw new ArgumentException($"unknown --footprint option {args[i]} (see tests/Cdc.Benchmarks/README.md)");
            }
        }
        if (s.DrainWarmup < 1000)
            throw new ArgumentException("--drain-warmup must be at least 1000");
        return s;
    }
}
