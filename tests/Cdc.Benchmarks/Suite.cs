using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Cdc.Embedded;

namespace Cdc.Benchmarks;

/// <summary>The suite: a throwaway PostgreSQL (fsync on), a mock Kafka cluster in a child process, the phases, the report.</summary>
sealed partial class Suite(Options o)
{
    const string CdcSlot = "bench_cdc";
    const string RecvSlot = "bench_recv";
    readonly SuiteResult _result = new();
    EmbeddedPostgres _pg = null!;
    Database _db = null!;
    Broker _broker = null!;
    int _postmasterPid;
    long _nextRow;

    static void Say(string text) => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {text}");

    public async Task<int> RunAsync()
    {
        var total = Stopwatch.StartNew();
        _result.Settings = o.Describe();
        _result.Machine = Machine();
        Say($"Cdc benchmark suite ({(o.Quick ? "quick" : "full")}): {o.Events:N0} events, worker build {Cdc.Embedded.WorkerBinary.Configuration}, " +
            $"commit {_result.Machine["commit"]}, load {Proc.LoadAverage()}");
        if (o.Quick)
            _result.Notes.Add("--quick: the drains last about a second, too short for the worker's tiered JIT to settle; " +
                              "drain rates, ratios and CPU per event of a quick run are not the steady state (run without --quick).");
        if (Cdc.Embedded.WorkerBinary.Configuration != "Release")
            _result.Notes.Add($"The worker and this app are a {Cdc.Embedded.WorkerBinary.Configuration} build: numbers are not representative (use -c Release).");

        _pg = await EmbeddedPostgres.StartAsync(new EmbeddedPostgresOptions
        {
            Fsync = true, // and synchronous_commit on (the default): commits are durable, as in production
            MaxReplicationSlots = 10,
            Settings = new Dictionary<string, string>
            {
                ["shared_buffers"] = "512MB",
                ["max_wal_size"] = "8GB",
                ["checkpoint_timeout"] = "30min",
            },
        });
        try
        {
            _db = new Database(_pg.ConnectionString);
            _postmasterPid = int.Parse(File.ReadLines(Path.Combine(_pg.DataDirectory, "postmaster.pid")).First());
            _result.Machine["postgres"] = (string?)await _db.ScalarAsync("SELECT version()");
            _result.Machine["postgres_settings"] = "fsync=on, synchronous_commit=on, wal_level=logical, shared_buffers=512MB, max_wal_size=8GB, checkpoint_timeout=30min";
            _broker = await Broker.StartAsync(o.Brokers);
            var rf = Math.Min(3, o.Brokers);
            await _broker.CommandAsync($"topic {Database.Topic} {o.Partitions} {rf}");
            await _broker.CommandAsync($"topic outbox.dlq 1 {rf}");
            await _broker.CommandAsync($"topic {WolverineMode.Topic} {o.Partitions} {rf}");
            _result.Machine["kafka"] = $"librdkafka mock cluster (Kafka-protocol test broker, not Apache Kafka), {o.Brokers} brokers in a child process; topic {o.Partitions} partitions, replication factor {rf}";
            await _db.CreateSchemaAsync();

            if (o.Runs("drain"))
                await DrainPhasesAsync();
            if (o.Runs("latency"))
                await LatencyPhaseAsync();
            if (o.Runs("backpressure"))
                await BackpressurePhaseAsync();
        }
        finally
        {
            _broker?.Dispose();
            await _pg.DisposeAsync();
        }

        Targets();
        _result.Machine["total_seconds"] = Math.Round(total.Elapsed.TotalSeconds);
        var report = Report.Table(_result);
        Console.WriteLine();
        Console.WriteLine(report);
        await File.WriteAllTextAsync(o.Out, Report.Json(_result));
        Say($"Wrote {Path.GetFullPath(o.Out)} ({total.Elapsed.TotalMinutes:0.0} min in all; load {Proc.LoadAverage()})");
        return 0;
    }

    // ---------------------------------------------------------------- 1. backlog drain

    async Task DrainPhasesAsync()
    {
        Say("1. Backlog drain");
        await _db.CreateSlotAsync(CdcSlot);
        await _db.CreateSlotAsync(RecvSlot);

        var load = Proc.LoadAverage();
        await _db.WriteRowsAsync("public.outbox", _nextRow, o.Warmup, o.RowsPerTransaction, o.Writers);
        _nextRow += o.Warmup;
        var warmEnd = await _db.CurrentLsnAsync();
        var written = await _db.WriteRowsAsync("public.outbox", _nextRow, o.Events, o.RowsPerTransaction, o.Writers);
        _nextRow += o.Events;
        var end = await _db.CurrentLsnAsync();
        var sizes = await _db.ScalarAsync(
            "SELECT array[avg(octet_length(payload::text)), avg(octet_length(headers::text)), avg(pg_column_size(o.*))]::float8[] FROM (SELECT * FROM public.outbox LIMIT 10000) o");
        var s = (double[])sizes!;
        _result.Backlog = new()
        {
            ["events"] = o.Events,
            ["warmup_events"] = o.Warmup,
            ["rows_per_transaction"] = o.RowsPerTransaction,
            ["write_seconds"] = Math.Round(written.TotalSeconds, 2),
            ["write_rate"] = Math.Round(o.Events / written.TotalSeconds),
            ["payload_bytes_avg"] = Math.Round(s[0]),
            ["headers_bytes_avg"] = Math.Round(s[1]),
            ["row_bytes_avg"] = Math.Round(s[2]),
            ["wal_bytes"] = end - warmEnd,
            ["load_start"] = load,
            ["load_end"] = Proc.LoadAverage(),
        };
        Say($"   wrote {o.Warmup:N0} warm-up + {o.Events:N0} rows ({o.RowsPerTransaction}/tx, {o.Writers} writers) in {written.TotalSeconds:0.0} s " +
            $"({o.Events / written.TotalSeconds:N0} rows/s); payload {s[0]:0} B, WAL {(end - warmEnd) / 1048576.0:N0} MiB; load {Proc.LoadAverage()}");

        _result.Drains.Add(await Guarded("a", "pg_recvlogical (server decode ceiling)", r => RecvLogicalAsync(r, warmEnd, end)));
        _result.Drains.Add(await Guarded("b", "Cdc worker", r => ConnectorDrainAsync(r, warmEnd, end)));
        await _db.DropSlotAsync(CdcSlot);
        await _db.DropSlotAsync(RecvSlot);

        if (o.Runs("polling"))
            _result.Drains.Add(await Guarded("c", "Cdc worker, polling mode (SELECT … FOR UPDATE SKIP LOCKED, DELETE)", PollingDrainAsync));
        if (o.Runs("wolverine"))
            _result.Drains.Add(await Guarded("d", "WolverineFx 6.62 durable outbox", WolverineDrainAsync));

        var b = _result.Drains.FirstOrDefault(d => d.Name == "b" && d.Error is null);
        foreach (var other in _result.Drains.Where(d => d.Name != "b"))
            _result.Ratios[$"b/{other.Name}"] = b is not null && other.Error is null && other.EventsPerSecond > 0
                ? Math.Round(b.EventsPerSecond / other.EventsPerSecond, 2)
                : null;
    }

    async Task<DrainResult> Guarded(string name, string relay, Func<DrainResult, Task> run)
    {
        var load = Proc.LoadAverage();
        Say($"   {name}. {relay}: load {load}");
        var result = new DrainResult { Name = name, Relay = relay };
        try
        {
            await run(result);
        }
        catch (Exception e)
        {
            result.Error = e.Message.Split('\n')[0];
            Say($"   {name}. FAILED: {e}");
        }
        result.LoadStart = load;
        result.LoadEnd = Proc.LoadAverage();
        if (result.Error is null)
            Say($"   {name}. {result.Events:N0} events in {result.Seconds:0.00} s = {result.EventsPerSecond:N0} events/s" +
                (result.CpuSecondsPerMillion is { } c ? $", {c:0.0} CPU s per million" : "") +
                (result.PeakRssBytes is { } r ? $", peak RSS {r / 1048576.0:0} MB" : "") + $"; load {result.LoadEnd}");
        return result;
    }
}
