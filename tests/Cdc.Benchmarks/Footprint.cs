using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Cdc.Embedded;

namespace Cdc.Benchmarks;

/// <summary>
/// <c>--footprint</c>: what one connector costs at rest and at start, the JIT worker (<c>dotnet Cdc.Worker.dll</c>) and
/// the NativeAOT one side by side in the same run, on the suite's servers (PostgreSQL with fsync on, the mock cluster in
/// a child process): start to streaming with the slot and publication already there, idle RSS and CPU while streaming
/// with nothing to relay, and peak RSS while draining a backlog written while the worker was stopped.
/// </summary>
static class Footprint
{
    const string Rid = "linux-x64";

    sealed class Settings
    {
        public int Starts { get; set; } = 5;
        public int IdleSeconds { get; set; } = 30;
        public int Backlog { get; set; } = 200_000;
        public int Warmup { get; set; } = 5_000;
        public string? Native { get; set; }
        public string Out { get; set; } = "footprint.json";
        public bool Echo { get; set; }
        public Dictionary<string, string?> WorkerEnv { get; } = [];
        public List<string> Variants { get; } = [];
    }

    sealed class VariantResult
    {
        public required string Name { get; init; }
        public required string Command { get; init; }
        public List<double> StartToStreamingMs { get; } = [];
        public double StartMedianMs => Median(StartToStreamingMs);
        public List<double> StartToLoggedMs { get; } = [];
        public double LoggedMedianMs => Median(StartToLoggedMs);
        public long IdleRssAfterStartBytes { get; set; }
        public long IdleRssBytes { get; set; }
        public long IdleRssMaxBytes { get; set; }
        public double IdleCores { get; set; }
        public double BacklogSeconds { get; set; }
        public double BacklogCpuMicrosPerEvent { get; set; }
        public long BacklogPeakRssBytes { get; set; }
        public string? LoadStart { get; set; }
        public string? LoadEnd { get; set; }
    }

    static void Say(string text) => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {text}");

    public static async Task<int> RunAsync(string[] args)
    {
        var s = Parse(args);
        var machine = Suite.Machine();
        var native = s.Native ?? await PublishNativeAsync();
        var variants = new List<(string Name, string[] Command)>
        {
            ("jit", ["dotnet", WorkerBinary.Path()]),
            ("native", [native]),
        };
        if (s.Variants.Count > 0)
            variants = variants.Where(v => s.Variants.Contains(v.Name)).ToList();
        Say($"Footprint: {string.Join(" and ", variants.Select(v => $"{v.Name} ({Text.Join(v.Command)})"))}; commit {machine["commit"]}, " +
            $"worker build {WorkerBinary.Configuration}; load {Proc.LoadAverage()}");

        await using var pg = await EmbeddedPostgres.StartAsync(new EmbeddedPostgresOptions
        {
            Fsync = true,
            MaxReplicationSlots = 10,
            Settings = new Dictionary<string, string> { ["shared_buffers"] = "256MB", ["max_wal_size"] = "4GB" },
        });
        using var broker = await Broker.StartAsync(3);
        await broker.CommandAsync($"topic {Database.Topic} 6 3");
        await broker.CommandAsync("topic outbox.dlq 1 3");
        var db = new Database(pg.ConnectionString);
        await db.CreateSchemaAsync();
        machine["postgres"] = (string?)await db.ScalarAsync("SELECT version()");

        var results = variants.Select(v => new VariantResult { Name = v.Name, Command = Text.Join(v.Command) }).ToList();
        long nextRow = 0;
        var env = variants.Select(v => Worker.EnvironmentFor(pg.ConnectionString, broker.BootstrapServers, $"fp_{v.Name}", null, s.WorkerEnv)).ToList();
        for (var i = 0; i < variants.Count; i++)
            await db.CreateSlotAsync($"fp_{variants[i].Name}");

        // Start to streaming: starts alternate between the variants, so that whatever else the machine does hits both.
        Say($"1. Start to streaming (slot and publication exist), {s.Starts} starts each");
        for (var n = 0; n < s.Starts; n++)
            for (var i = 0; i < variants.Count; i++)
            {
                var (child, activeMs, loggedMs) = await StartAsync(variants[i], env[i], s.Echo, db);
                results[i].StartToStreamingMs.Add(activeMs);
                results[i].StartToLoggedMs.Add(loggedMs);
                await child.TerminateAsync(TimeSpan.FromSeconds(40));
                child.Dispose();
            }
        foreach (var r in results)
            Say($"   {r.Name}: slot active after {string.Join(", ", r.StartToStreamingMs.Select(ms => ms.ToString("0", CultureInfo.InvariantCulture)))} ms " +
                $"(median {r.StartMedianMs:0}); 'Streaming slot' logged after a median {r.LoggedMedianMs:0} ms");

        for (var i = 0; i < variants.Count; i++)
        {
            var (name, _) = variants[i];
            var r = results[i];
            var slot = $"fp_{name}";
            r.LoadStart = Proc.LoadAverage();
            // The rows the other variants relayed are in this slot too: skip them, so each relays only its own.
            await db.ExecAsync($"SELECT pg_replication_slot_advance('{slot}', pg_current_wal_lsn())");

            // 2. Idle: streaming, a warm-up relayed, then nothing to relay.
            var (worker, _, _) = await StartAsync(variants[i], env[i], s.Echo, db);
            try
            {
                await Task.Delay(2000);
                r.IdleRssAfterStartBytes = Proc.RssBytes(worker.Pid);
                await db.WriteRowsAsync("public.outbox", nextRow, s.Warmup, 100, 4);
                nextRow += s.Warmup;
                if (!await db.WaitConfirmedAsync(slot, await db.CurrentLsnAsync(), TimeSpan.FromSeconds(120), () => worker.HasExited))
                    throw new InvalidOperationException($"{name}: the warm-up was not confirmed:\n{worker.Tail(30)}");
                await Task.Delay(5000); // let the last confirmations and timers settle
                var cpu0 = Proc.CpuSeconds(worker.Pid);
                var clock = Stopwatch.StartNew();
                long max = 0;
                while (clock.Elapsed.TotalSeconds < s.IdleSeconds)
                {
                    max = Math.Max(max, Proc.RssBytes(worker.Pid));
                    await Task.Delay(1000);
                }
                r.IdleCores = (Proc.CpuSeconds(worker.Pid) - cpu0) / clock.Elapsed.TotalSeconds;
                r.IdleRssBytes = Proc.RssBytes(worker.Pid);
                r.IdleRssMaxBytes = Math.Max(max, r.IdleRssBytes);
                Say($"   {name}: idle RSS {Mb(r.IdleRssBytes)} MB (max {Mb(r.IdleRssMaxBytes)}, {Mb(r.IdleRssAfterStartBytes)} right after start), idle CPU {r.IdleCores:0.0000} cores over {clock.Elapsed.TotalSeconds:0} s");
            }
            finally
            {
                await worker.TerminateAsync(TimeSpan.FromSeconds(40));
                worker.Dispose();
            }

            // 3. A backlog written while the worker is stopped, drained by a fresh start.
            await db.WriteRowsAsync("public.outbox", nextRow, s.Backlog, 100, 4);
            nextRow += s.Backlog;
            var end = await db.CurrentLsnAsync();
            var drainClock = Stopwatch.StartNew();
            var (drain, _, _) = await StartAsync(variants[i], env[i], s.Echo, db);
            try
            {
                if (!await db.WaitConfirmedAsync(slot, end, TimeSpan.FromMinutes(10), () => drain.HasExited))
                    throw new InvalidOperationException($"{name}: the backlog was not confirmed:\n{drain.Tail(30)}");
                r.BacklogSeconds = drainClock.Elapsed.TotalSeconds;
                r.BacklogCpuMicrosPerEvent = Proc.CpuSeconds(drain.Pid) / s.Backlog * 1e6;
                r.BacklogPeakRssBytes = Proc.PeakRssBytes(drain.Pid);
                Say($"   {name}: {s.Backlog:N0}-event backlog drained in {r.BacklogSeconds:0.0} s from process start, " +
                    $"{r.BacklogCpuMicrosPerEvent:0.0} µs CPU/event (start included), peak RSS {Mb(r.BacklogPeakRssBytes)} MB");
            }
            finally
            {
                await drain.TerminateAsync(TimeSpan.FromSeconds(40));
                drain.Dispose();
            }
            r.LoadEnd = Proc.LoadAverage();
        }

        var report = Table(results, machine, s);
        Console.WriteLine();
        Console.WriteLine(report);
        await File.WriteAllTextAsync(s.Out, JsonSerializer.Serialize(new
        {
            machine,
            settings = new { s.Starts, s.IdleSeconds, s.Backlog, s.Warmup, worker_env = s.WorkerEnv },
            results,
            report,
        }, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
        Say($"Wrote {Path.GetFullPath(s.Out)}");
        return 0;
    }

    /// <summary>
    /// Starts a worker; returns it once it logs that it streams, with the time from the process start to the server
    /// seeing its replication stream (the slot turns active: START_REPLICATION accepted, WAL flows) and to that line.
    /// The line comes later by design: the relay logs it once no other reader has claimed the slot for a grace period.
    /// </summary>
    static async Task<(Child Child, double ActiveMs, double LoggedMs)> StartAsync(
        (string Name, string[] Command) variant, Dictionary<string, string?> env, bool echo, Database db)
    {
        await using var connection = await db.OpenAsync();
        await using var active = new Npgsql.NpgsqlCommand("SELECT active FROM pg_replication_slots WHERE slot_name = $1", connection);
        active.Parameters.AddWithValue($"fp_{variant.Name}");
        await active.PrepareAsync();
        var clock = Stopwatch.StartNew();
        var child = Child.Start(variant.Name, variant.Command[0], variant.Command[1..], env, echo);
        try
        {
            while (await active.ExecuteScalarAsync() is not true)
            {
                if (child.HasExited || clock.Elapsed > TimeSpan.FromSeconds(60))
                    throw new InvalidOperationException($"{variant.Name} did not start streaming:\n{child.Tail(30)}");
                await Task.Delay(2);
            }
            var activeMs = clock.Elapsed.TotalMilliseconds;
            await child.WaitForLineAsync("Streaming slot", TimeSpan.FromSeconds(60), contains: true);
            return (child, activeMs, clock.Elapsed.TotalMilliseconds);
        }
        catch
        {
            child.Kill();
            child.Dispose();
            throw;
        }
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

    static string Table(List<VariantResult> results, Dictionary<string, object?> m, Settings s)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"Machine: {m["nproc"]} cores ({m["cpu"]}), {m["memory_gib"]} GiB; {m["dotnet"]}; commit {m["commit"]}; JIT worker build {m["worker_build"]}");
        sb.AppendLine($"PostgreSQL: {m["postgres"]?.ToString()?.Split(" on ")[0]} (fsync on); Kafka: librdkafka mock cluster (Kafka-protocol test broker), 3 brokers in a child process, 6 partitions");
        if (s.WorkerEnv.Count > 0)
            sb.AppendLine($"Worker environment: {string.Join(' ', s.WorkerEnv.Select(kv => $"{kv.Key}={kv.Value}"))}");
        sb.AppendLine();
        var cols = new List<string> { "figure" };
        cols.AddRange(results.Select(r => r.Name));
        if (results.Count == 2)
            cols.Add($"{results[1].Name}/{results[0].Name}");
        cols.Add("target (issue 11)");
        sb.AppendRow([.. cols]);
        sb.AppendRow([.. cols.Select((_, i) => i == 0 ? "---" : "---:")]);
        void Row(string figure, Func<VariantResult, double> value, string format, string target)
        {
            var cells = new List<string> { figure };
            cells.AddRange(results.Select(r => value(r).ToString(format, CultureInfo.InvariantCulture)));
            if (results.Count == 2)
                cells.Add(value(results[0]) > 0 ? (value(results[1]) / value(results[0])).ToString("0.00", CultureInfo.InvariantCulture) : "—");
            cells.Add(target);
            sb.AppendRow([.. cells]);
        }
        Row($"start to streaming: process start → slot active on the server, median of {s.Starts} (ms)", r => r.StartMedianMs, "0", "≤ 300");
        Row($"start → 'Streaming slot' logged (includes the relay's 750 ms start grace), median (ms)", r => r.LoggedMedianMs, "0", "");
        Row("idle RSS while streaming, after a warm-up (MB)", r => r.IdleRssBytes / 1048576.0, "0.0", "≤ 50");
        Row("idle RSS 2 s after start, before any event (MB)", r => r.IdleRssAfterStartBytes / 1048576.0, "0.0", "");
        Row($"idle CPU over {s.IdleSeconds} s (cores)", r => r.IdleCores, "0.0000", "≤ 0.01");
        Row($"{s.Backlog:N0}-event backlog: peak RSS (MB)", r => r.BacklogPeakRssBytes / 1048576.0, "0.0", "≤ 80 (1M drain)");
        Row($"{s.Backlog:N0}-event backlog: process start to confirmed (s)", r => r.BacklogSeconds, "0.00", "");
        Row($"{s.Backlog:N0}-event backlog: CPU per event, start included (µs)", r => r.BacklogCpuMicrosPerEvent, "0.0", "");
        sb.AppendLine();
        sb.AppendLine("Load (1m/5m/15m) per variant, start → end: " + string.Join("; ", results.Select(r => $"{r.Name} {r.LoadStart?.Split(' ')[0]}→{r.LoadEnd?.Split(' ')[0]}")));
        return sb.ToString();
    }

    static Settings Parse(string[] args)
    {
        var s = new Settings();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int NextInt() => int.Parse(Next().Replace("_", ""), CultureInfo.InvariantCulture);
            switch (args[i])
            {
                case "--starts": s.Starts = NextInt(); break;
                case "--idle-seconds": s.IdleSeconds = NextInt(); break;
                case "--backlog": s.Backlog = NextInt(); break;
                case "--warmup": s.Warmup = NextInt(); break;
                case "--native": s.Native = Path.GetFullPath(Next()); break;
                case "--only": s.Variants.AddRange(Next().Split(',')); break;
                case "--out": s.Out = Next(); break;
                case "--echo": s.Echo = true; break;
                case "--worker-env":
                    var kv = Next().Split('=', 2);
                    s.WorkerEnv[kv[0]] = kv.Length > 1 ? kv[1] : "";
                    break;
                default: throw new ArgumentException($"unknown --footprint option {args[i]} (see tests/Cdc.Benchmarks/README.md)");
            }
        }
        return s;
    }

    static double Median(List<double> values)
    {
        if (values.Count == 0)
            return 0;
        var sorted = values.Order().ToList();
        var mid = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    static string Mb(long bytes) => (bytes / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture);
}
