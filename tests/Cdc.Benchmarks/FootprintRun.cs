using System.Diagnostics;
using Cdc.Embedded;
using Npgsql;
using NpgsqlTypes;

namespace Cdc.Benchmarks;

/// <summary>The phases of <c>--footprint</c>, in the order they run (see README.md, "Footprint").</summary>
sealed class FootprintRun(FootprintSettings s, EmbeddedPostgres pg, Broker broker, Database db, List<Variant> variants)
{
    const string Recv = "pg_recvlogical";
    public FootprintResult Result { get; } = new();
    long _nextRow;

    static void Say(string text) => Footprint.Say(text);

    VariantFigures F(string name)
    {
        if (!Result.Figures.TryGetValue(name, out var f))
            Result.Figures[name] = f = new VariantFigures();
        return f;
    }

    static string Slot(string prefix, int i) => $"{prefix}_{i}";

    public async Task RunAsync()
    {
        if (s.HoldSeconds > 0)
        {
            // For experiments by hand: the servers, an environment to start a worker with, then a pause.
            await db.CreateSlotAsync("hold");
            Say($"Holding {s.HoldSeconds} s; a worker: " + string.Join(' ', Env(variants[0], "hold").Select(kv => $"{kv.Key}='{kv.Value}'")));
            await Task.Delay(TimeSpan.FromSeconds(s.HoldSeconds));
            await db.DropSlotAsync("hold");
        }
        for (var i = 0; i < variants.Count; i++)
            await db.CreateSlotAsync(Slot("fp", i));
        await db.CreateSlotAsync("fp_recv");
        if (s.Runs("start"))
            await Guard("start", StartPhaseAsync);
        if (s.Runs("idle") || s.Runs("rate") || s.Runs("burst"))
            await Guard("running", RunningPhasesAsync);
        if (s.Runs("burst"))
            await Guard("burst", RestartBurstAsync);
        for (var i = 0; i < variants.Count; i++)
            await db.DropSlotAsync(Slot("fp", i));
        await db.DropSlotAsync("fp_recv");
        if (s.Runs("drain"))
            await Guard("drain", DrainPhaseAsync);
        if (s.Runs("backpressure"))
            await Guard("backpressure", BackpressurePhaseAsync);
    }

    async Task Guard(string phase, Func<Task> run)
    {
        try
        {
            await run();
        }
        catch (Exception e)
        {
            Result.Notes.Add($"phase {phase} failed: {e.Message.Split('\n')[0]}");
            Say($"   phase {phase} FAILED: {e}");
        }
    }

    // ------------------------------------------------------------------ starting workers

    Dictionary<string, string?> Env(Variant v, string slot, IDictionary<string, string?>? extra = null)
    {
        // The worker's defaults: only what every deployment must set.
        var env = new Dictionary<string, string?>
        {
            ["Cdc__Postgres__ConnectionString"] = pg.ConnectionString,
            ["Cdc__Postgres__Table"] = "public.outbox",
            ["Cdc__Postgres__Slot"] = slot,
            ["Cdc__Postgres__Publication"] = Database.Publication,
            ["Cdc__Kafka__BootstrapServers"] = broker.BootstrapServers,
            ["ASPNETCORE_URLS"] = "http://127.0.0.1:0",
        };
        foreach (var source in new[] { extra, v.Env })
            if (source is not null)
                foreach (var (k, value) in source)
                    env[k] = value?.Replace("{pg}", pg.ConnectionString, StringComparison.Ordinal);
        return env;
    }

    sealed record Started(RunningWorker Worker, double ActiveMs, double LoggedMs, double CpuAtActive);

    /// <summary>
    /// Starts a worker and returns once it logged that it streams, with the time from the process start to the server
    /// showing its slot active (START_REPLICATION accepted) and to that line (logged after the relay's start grace), and
    /// its CPU when the slot turned active (what starting cost).
    /// </summary>
    async Task<Started> StartWorkerAsync(Variant v, string slot, IDictionary<string, string?>? extra = null)
    {
        await using var connection = await db.OpenAsync();
        await using var active = new NpgsqlCommand("SELECT active FROM pg_replication_slots WHERE slot_name = $1", connection);
        active.Parameters.AddWithValue(slot);
        await active.PrepareAsync();
        var clock = Stopwatch.StartNew();
        var child = Child.Start(v.Name, v.File, v.Args, Env(v, slot, extra), s.Echo);
        var worker = new RunningWorker { Variant = v, Child = child, Slot = slot };
        try
        {
            while (await active.ExecuteScalarAsync() is not true)
            {
                if (child.HasExited || clock.Elapsed > TimeSpan.FromSeconds(60))
                    throw new InvalidOperationException($"{v.Name} did not start streaming:\n{child.Tail(30)}");
                await Task.Delay(2);
            }
            var activeMs = clock.Elapsed.TotalMilliseconds;
            var cpu = worker.CpuSeconds();
            const string marker = "Now listening on: ";
            var line = await child.WaitForLineAsync(marker, TimeSpan.FromSeconds(60), contains: true);
            worker.Url = line[(line.IndexOf(marker, StringComparison.Ordinal) + marker.Length)..].Trim();
            await child.WaitForLineAsync("Streaming slot", TimeSpan.FromSeconds(60), contains: true);
            return new Started(worker, activeMs, clock.Elapsed.TotalMilliseconds, cpu);
        }
        catch
        {
            worker.Dispose();
            throw;
        }
    }

    async Task<bool> WaitConfirmedAsync(RunningWorker w, ulong lsn, TimeSpan timeout) =>
        await db.WaitConfirmedAsync(w.Slot, lsn, timeout, () => w.HasExited);

    /// <summary>Waits until the walsender of <paramref name="application"/> has sent up to <paramref name="lsn"/>.</summary>
    async Task<bool> WaitSentAsync(string application, ulong lsn, TimeSpan timeout)
    {
        await using var connection = await db.OpenAsync();
        await using var sent = new NpgsqlCommand("SELECT sent_lsn FROM pg_stat_replication WHERE application_name = $1", connection);
        sent.Parameters.AddWithValue(application);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (await sent.ExecuteScalarAsync() is NpgsqlLogSequenceNumber at && (ulong)at >= lsn)
                return true;
            await Task.Delay(10);
        }
        return false;
    }

    async Task<ulong> WriteAsync(int rows, int rowsPerTx)
    {
        var took = await db.WriteRowsAsync("public.outbox", _nextRow, rows, rowsPerTx, s.Writers);
        _nextRow += rows;
        Say($"   wrote {rows:N0} rows ({rowsPerTx}/tx, {s.Writers} writers) in {took.TotalSeconds:0.0} s");
        return await db.CurrentLsnAsync();
    }

    // ------------------------------------------------------------------ 1. start to streaming

    async Task StartPhaseAsync()
    {
        Say($"1. Start to streaming (slot and publication exist), {s.Starts} starts each, alternating; load {Proc.LoadAverage()}");
        await using var connection = await db.OpenAsync();
        await using var active = new NpgsqlCommand("SELECT active FROM pg_replication_slots WHERE slot_name = 'fp_recv'", connection);
        for (var n = 0; n < s.Starts; n++)
        {
            for (var i = 0; i < variants.Count; i++)
            {
                var started = await StartWorkerAsync(variants[i], Slot("fp", i));
                F(variants[i].Name).StartMs.Add(Math.Round(started.ActiveMs, 1));
                F(variants[i].Name).LoggedMs.Add(Math.Round(started.LoggedMs, 1));
                F(variants[i].Name).StartCpuSeconds.Add(started.CpuAtActive);
                await started.Worker.TerminateAsync();
                started.Worker.Dispose();
            }
            var clock = Stopwatch.StartNew();
            using var recv = await RecvLogical.StartAsync(pg.Port, "fp_recv");
            while (await active.ExecuteScalarAsync() is not true && clock.Elapsed < TimeSpan.FromSeconds(30))
                await Task.Delay(2);
            F(Recv).StartMs.Add(Math.Round(clock.Elapsed.TotalMilliseconds, 1));
            await recv.StopAsync();
            // Its walsender lets go of the slot a moment after the client left.
            while (await active.ExecuteScalarAsync() is true && clock.Elapsed < TimeSpan.FromSeconds(30))
                await Task.Delay(10);
        }
        foreach (var (name, f) in Result.Figures)
            Say($"   {name}: slot active after {string.Join(", ", f.StartMs.Select(ms => $"{ms:0}"))} ms (median {f.StartMedianMs:0})" +
                (f.LoggedMs.Count > 0 ? $"; 'Streaming slot' logged after a median {f.LoggedMedianMs:0} ms; CPU to active {f.StartCpuMedianSeconds * 1000:0} ms" : ""));
    }

    // ------------------------------------------------------------------ 2-4. idle, 1,000 events/s, burst after a pause

    async Task RunningPhasesAsync()
    {
        Say($"2. Idle, {s.Rate:N0} events/s and a burst after a pause: every variant and pg_recvlogical streaming at once; load {Proc.LoadAverage()}");
        var workers = new List<RunningWorker>();
        RecvLogical? recv = null;
        try
        {
            for (var i = 0; i < variants.Count; i++)
                workers.Add((await StartWorkerAsync(variants[i], Slot("fp", i))).Worker);
            recv = await RecvLogical.StartAsync(pg.Port, "fp_recv");
            await Task.Delay(2000);
            foreach (var w in workers)
                F(w.Variant.Name).RssAfterStartBytes = Proc.RssBytes(w.Pid);
            F(Recv).RssAfterStartBytes = recv.RssBytes();

            // Warm-up: every reader relays the same events once.
            var warm = await WriteAsync(s.Warmup, s.RowsPerTransaction);
            await CaughtUpAsync(workers, recv, warm, TimeSpan.FromMinutes(2));
            await Task.Delay(5000); // the last confirms and timers settle

            if (s.Runs("idle"))
                await IdleAsync(workers, recv);
            if (s.Runs("rate"))
                await RateAsync(workers, recv);
            if (s.Runs("burst"))
                await PausedBurstAsync(workers, recv);
        }
        finally
        {
            foreach (var w in workers)
            {
                await w.TerminateAsync();
                w.Dispose();
            }
            if (recv is not null)
            {
                await recv.StopAsync();
                recv.Dispose();
            }
        }
    }

    async Task CaughtUpAsync(List<RunningWorker> workers, RecvLogical? recv, ulong lsn, TimeSpan timeout)
    {
        foreach (var w in workers)
            if (!await WaitConfirmedAsync(w, lsn, timeout))
                throw new InvalidOperationException($"{w.Variant.Name} did not confirm {RecvLogical.Lsn(lsn)}:\n{w.Child.Tail(30)}");
        if (recv is not null && !await WaitSentAsync("fp_recv", lsn, timeout))
            throw new InvalidOperationException($"pg_recvlogical was not sent {RecvLogical.Lsn(lsn)}: {recv.Tail(10)}");
    }

    async Task IdleAsync(List<RunningWorker> workers, RecvLogical recv)
    {
        var pids = workers.Select(w => (Name: w.Variant.Name, w.Pid)).Append((Name: Recv, Pid: recv.Pid)).ToList();
        var cpu0 = pids.Select(p => Proc.CpuSeconds(p.Pid)).ToList();
        var max = new long[pids.Count];
        var clock = Stopwatch.StartNew();
        await using (Profiler.Start(s, workers, "idle"))
        {
            while (clock.Elapsed.TotalSeconds < s.IdleSeconds)
            {
                for (var i = 0; i < pids.Count; i++)
                    max[i] = Math.Max(max[i], Proc.RssBytes(pids[i].Pid));
                await Task.Delay(1000);
            }
        }
        var seconds = clock.Elapsed.TotalSeconds;
        for (var i = 0; i < pids.Count; i++)
        {
            var f = F(pids[i].Name);
            f.IdleCores = (Proc.CpuSeconds(pids[i].Pid) - cpu0[i]) / seconds;
            f.IdleRssBytes = Proc.RssBytes(pids[i].Pid);
            f.IdleRssMaxBytes = Math.Max(max[i], f.IdleRssBytes.Value);
            f.IdleAnonymousBytes = Proc.AnonymousBytes(pids[i].Pid);
            f.IdleThreads = Proc.Threads(pids[i].Pid);
            Say($"   {pids[i].Name}: idle RSS {Mb(f.IdleRssBytes)} MB (anonymous {Mb(f.IdleAnonymousBytes)}, max {Mb(f.IdleRssMaxBytes)}, " +
                $"{Mb(f.RssAfterStartBytes)} 2 s after start), {f.IdleThreads} threads, idle CPU {f.IdleCores:0.0000} cores over {seconds:0} s");
        }
    }

    async Task RateAsync(List<RunningWorker> workers, RecvLogical recv)
    {
        var pids = workers.Select(w => (Name: w.Variant.Name, w.Pid)).Append((Name: Recv, Pid: recv.Pid)).ToList();
        var before = new List<Metrics>();
        foreach (var w in workers)
            before.Add(await w.ScrapeAsync());
        foreach (var p in pids)
            Proc.ResetPeakRss(p.Pid);
        var cpu0 = pids.Select(p => Proc.CpuSeconds(p.Pid)).ToList();
        var load = Proc.LoadAverage();
        long rows;
        double seconds;
        await using (Profiler.Start(s, workers, "rate"))
        {
            (rows, seconds, _nextRow) = await db.PacedWriteAsync(_nextRow, s.Rate, s.RateSeconds, s.RateRowsPerTransaction, s.Writers);
            await CaughtUpAsync(workers, recv, await db.CurrentLsnAsync(), TimeSpan.FromMinutes(2));
        }
        var achieved = rows / seconds;
        for (var i = 0; i < pids.Count; i++)
        {
            var f = F(pids[i].Name);
            f.RateAchieved = Math.Round(achieved);
            f.RateEvents = rows;
            f.RateCpuMicrosPerEvent = (Proc.CpuSeconds(pids[i].Pid) - cpu0[i]) / rows * 1e6;
            f.RatePeakRssBytes = Proc.PeakRssBytes(pids[i].Pid);
            if (i < workers.Count)
            {
                var latency = LatencySummary.Between(before[i], await workers[i].ScrapeAsync());
                f.RateP50Ms = Finite(latency.P50Ms);
                f.RateP99Ms = Finite(latency.P99Ms);
            }
            Say($"   {pids[i].Name}: {s.Rate:N0}/s target, {achieved:N0}/s achieved, {rows:N0} events ({s.RateRowsPerTransaction}/tx): " +
                $"{f.RateCpuMicrosPerEvent:0.0} µs CPU/event, peak RSS {Mb(f.RatePeakRssBytes)} MB" +
                (f.RateP50Ms is null ? "" : $", latency p50 {f.RateP50Ms:0.0} ms p99 {f.RateP99Ms:0.0} ms"));
        }
        Result.RateLoad = $"{load} → {Proc.LoadAverage()}";
    }

    /// <summary>
    /// A burst right after a pause: every reader is stopped (SIGSTOP) while the burst is written, then continued one at a
    /// time (the others stay stopped) and timed until it has the whole burst. Warm: the process already relayed the
    /// warm-up and the fixed rate.
    /// </summary>
    async Task PausedBurstAsync(List<RunningWorker> workers, RecvLogical recv)
    {
        Say($"4a. Burst of {s.Burst:N0} events after a pause (SIGSTOP while written, SIGCONT one at a time); load {Proc.LoadAverage()}");
        foreach (var w in workers)
            Proc.Signal(w.Pid, Proc.SigStop);
        Proc.Signal(recv.Pid, Proc.SigStop);
        var end = await WriteAsync(s.Burst, s.RowsPerTransaction);
        foreach (var w in workers)
        {
            Proc.ResetPeakRss(w.Pid);
            var cpu0 = w.CpuSeconds();
            var clock = Stopwatch.StartNew();
            await using (Profiler.Start(s, [w], "burst"))
            {
                Proc.Signal(w.Pid, Proc.SigCont);
                if (!await WaitConfirmedAsync(w, end, TimeSpan.FromMinutes(10)))
                    throw new InvalidOperationException($"{w.Variant.Name} did not confirm the burst:\n{w.Child.Tail(30)}");
            }
            var f = new BurstFigures
            {
                Events = s.Burst,
                Seconds = clock.Elapsed.TotalSeconds,
                CpuSeconds = w.CpuSeconds() - cpu0,
                PeakRssBytes = Proc.PeakRssBytes(w.Pid),
            };
            F(w.Variant.Name).Paused = f;
            Say($"   {w.Variant.Name}: {f.Seconds:0.00} s, {f.CpuMicrosPerEvent:0.0} µs CPU/event, peak RSS {Mb(f.PeakRssBytes)} MB");
        }
        {
            Proc.ResetPeakRss(recv.Pid);
            var cpu0 = recv.CpuSeconds();
            var clock = Stopwatch.StartNew();
            Proc.Signal(recv.Pid, Proc.SigCont);
            if (!await WaitSentAsync("fp_recv", end, TimeSpan.FromMinutes(10)))
                throw new InvalidOperationException("pg_recvlogical was not sent the burst");
            var seconds = clock.Elapsed.TotalSeconds;
            await Task.Delay(300); // the last bytes in its socket
            var f = new BurstFigures { Events = s.Burst, Seconds = seconds, CpuSeconds = recv.CpuSeconds() - cpu0, PeakRssBytes = recv.PeakRssBytes() };
            F(Recv).Paused = f;
            Say($"   {Recv}: {f.Seconds:0.00} s, {f.CpuMicrosPerEvent:0.0} µs CPU/event, peak RSS {Mb(f.PeakRssBytes)} MB");
        }
    }

    /// <summary>
    /// The issue's burst: the workers (warmed up above) were stopped, the burst is written, then each starts afresh and
    /// is timed from its process start until the slot confirms the burst's end (its start-up included).
    /// </summary>
    async Task RestartBurstAsync()
    {
        Say($"4b. Burst of {s.Burst:N0} events written while the workers were stopped, drained by a fresh start; load {Proc.LoadAverage()}");
        var start = await db.CurrentLsnAsync();
        var end = await WriteAsync(s.Burst, s.RowsPerTransaction);
        for (var i = 0; i < variants.Count; i++)
        {
            var clock = Stopwatch.StartNew();
            var started = await StartWorkerAsync(variants[i], Slot("fp", i));
            using var w = started.Worker;
            await using (Profiler.Start(s, [w], "restart"))
            {
                if (!await WaitConfirmedAsync(w, end, TimeSpan.FromMinutes(10)))
                    throw new InvalidOperationException($"{w.Variant.Name} did not confirm the burst:\n{w.Child.Tail(30)}");
            }
            var f = new BurstFigures
            {
                Events = s.Burst,
                Seconds = clock.Elapsed.TotalSeconds,
                CpuSeconds = w.CpuSeconds(),
                StartCpuSeconds = started.CpuAtActive,
                PeakRssBytes = Proc.PeakRssBytes(w.Pid),
            };
            F(w.Variant.Name).Restarted = f;
            Say($"   {w.Variant.Name}: {f.Seconds:0.00} s from process start, {f.CpuMicrosPerEvent:0.0} µs CPU/event start included " +
                $"({f.StartCpuSeconds * 1000:0} ms CPU until the slot was active), peak RSS {Mb(f.PeakRssBytes)} MB");
            await w.TerminateAsync();
        }
        {
            await db.ExecAsync($"SELECT pg_replication_slot_advance('fp_recv', '{RecvLogical.Lsn(start)}')");
            var (seconds, cpu, peak) = await RecvToEndAsync("fp_recv", end);
            var f = new BurstFigures { Events = s.Burst, Seconds = seconds, CpuSeconds = cpu, PeakRssBytes = peak };
            F(Recv).Restarted = f;
            Say($"   {Recv}: {f.Seconds:0.00} s from process start, {f.CpuMicrosPerEvent:0.0} µs CPU/event, peak RSS {Mb(f.PeakRssBytes)} MB");
        }
    }

    /// <summary>pg_recvlogical from its start to its exit at <paramref name="end"/>: seconds, its whole CPU, its peak RSS (sampled).</summary>
    async Task<(double Seconds, double Cpu, long PeakRss)> RecvToEndAsync(string slot, ulong end, Func<Task>? whileRunning = null)
    {
        var clock = Stopwatch.StartNew();
        using var recv = await RecvLogical.StartAsync(pg.Port, slot, end);
        long peak = 0;
        var sampling = Task.Run(async () =>
        {
            while (!recv.HasExited && recv.Pid != 0)
            {
                try
                {
                    peak = Math.Max(peak, recv.PeakRssBytes());
                }
                catch (Exception e) when (e is IOException or InvalidOperationException or UnauthorizedAccessException)
                {
                    return;
                }
                await Task.Delay(20);
            }
        });
        if (whileRunning is not null)
            await whileRunning();
        var (exit, cpu) = await recv.WaitForExitAsync(TimeSpan.FromMinutes(30));
        var seconds = clock.Elapsed.TotalSeconds;
        await sampling;
        var confirmed = await db.ConfirmedLsnAsync(slot);
        if (exit != 0 || confirmed < end)
            throw new InvalidOperationException($"pg_recvlogical exited {exit}, slot at {RecvLogical.Lsn(confirmed)} (end {RecvLogical.Lsn(end)}): {recv.Tail(10)}");
        return (seconds, cpu, peak);
    }

    // ------------------------------------------------------------------ 5. steady drain

    async Task DrainPhaseAsync()
    {
        Say($"5. Steady drain of {s.DrainEvents:N0} events after a {s.DrainWarmup:N0}-event warm-up, one reader at a time" +
            (s.DrainRepeat > 1 ? $", {s.DrainRepeat} rounds (pg_recvlogical, then each variant, per round)" : "") + $"; load {Proc.LoadAverage()}");
        for (var k = 0; k < s.DrainRepeat; k++)
        {
            await db.CreateSlotAsync($"dr_recv_{k}");
            for (var i = 0; i < variants.Count; i++)
                await db.CreateSlotAsync($"dr_{i}_{k}");
        }
        var warmEnd = await WriteAsync(s.DrainWarmup, s.RowsPerTransaction);
        var end = await WriteAsync(s.DrainEvents, s.RowsPerTransaction);
        var sizes = (double[])(await db.ScalarAsync(
            "SELECT array[avg(octet_length(payload::text)), avg(octet_length(headers::text)), avg(pg_column_size(o.*))]::float8[] " +
            "FROM (SELECT * FROM public.outbox ORDER BY created_at DESC LIMIT 10000) o"))!;
        Result.Workload = new()
        {
            ["payload_bytes_avg"] = Math.Round(sizes[0]),
            ["headers_bytes_avg"] = Math.Round(sizes[1]),
            ["row_bytes_avg"] = Math.Round(sizes[2]),
            ["drain_wal_bytes"] = end - warmEnd,
        };
        Say($"   payload {sizes[0]:0} B jsonb, headers {sizes[1]:0} B, row {sizes[2]:0} B; WAL of the drain {(end - warmEnd) / 1048576.0:0} MiB");

        for (var k = 0; k < s.DrainRepeat; k++)
        {
            var recv = await RecvDrainAsync($"dr_recv_{k}", warmEnd, end);
            F(Recv).Drains.Add(recv);
            Say($"   {Recv}: {recv.EventsPerSecond:N0} events/s, {recv.CpuMicrosPerEvent:0.00} µs CPU/event, peak RSS {Mb(recv.PeakRssBytes)} MB");
            await db.DropSlotAsync($"dr_recv_{k}");
            for (var i = 0; i < variants.Count; i++)
            {
                var slot = $"dr_{i}_{k}";
                var d = await WorkerDrainAsync(variants[i], slot, warmEnd, end);
                F(variants[i].Name).Drains.Add(d);
                Say($"   {variants[i].Name}: {d.EventsPerSecond:N0} events/s ({d.EventsPerSecond / recv.EventsPerSecond:0.00} of pg_recvlogical's), " +
                    $"{d.CpuMicrosPerEvent:0.00} µs CPU/event, peak RSS {Mb(d.PeakRssBytes)} MB; load {Proc.LoadAverage()}");
                await db.DropSlotAsync(slot);
            }
        }
    }

    /// <summary>pg_recvlogical, timed like the workers: from its walsender passing the warm-up's end to its exit at --endpos.</summary>
    async Task<DrainFigures> RecvDrainAsync(string slot, ulong warmEnd, ulong end)
    {
        var load = Proc.LoadAverage();
        await db.ExecAsync($"SELECT pg_replication_slot_advance('{slot}', '{RecvLogical.Lsn(warmEnd)}')");
        Stopwatch? timer = null;
        ulong from = 0;
        var (total, cpu, peak) = await RecvToEndAsync(slot, end, async () =>
        {
            await using var connection = await db.OpenAsync();
            await using var sent = new NpgsqlCommand("SELECT sent_lsn FROM pg_stat_replication WHERE application_name = $1", connection);
            sent.Parameters.AddWithValue(slot);
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromMinutes(30))
            {
                var value = await sent.ExecuteScalarAsync();
                if (timer is null && value is NpgsqlLogSequenceNumber lsn && (ulong)lsn > warmEnd)
                {
                    timer = Stopwatch.StartNew();
                    from = (ulong)lsn;
                }
                if (timer is not null && (value is null or DBNull || (value is NpgsqlLogSequenceNumber at && (ulong)at >= end)))
                    break;
                await Task.Delay(timer is null ? 5 : 20);
            }
        });
        // Its exit comes right after the server sent the end; the timer stops there.
        return new DrainFigures
        {
            Events = Math.Round(s.DrainEvents * (double)(end - from) / (end - warmEnd)),
            Seconds = timer?.Elapsed.TotalSeconds ?? total,
            CpuSeconds = cpu,
            CpuEvents = s.DrainEvents,
            PeakRssBytes = peak,
            Note = $"start to exit {total:0.00} s; CPU is its whole run over all {s.DrainEvents:N0} events",
            Load = $"{load} → {Proc.LoadAverage()}",
        };
    }

    /// <summary>
    /// A fresh worker on a slot positioned before the warm-up: timed (and its CPU counted) from the slot confirming past
    /// the warm-up's end to confirming the backlog's end, events pro rata of WAL between the two readings.
    /// </summary>
    async Task<DrainFigures> WorkerDrainAsync(Variant v, string slot, ulong warmEnd, ulong end)
    {
        var load = Proc.LoadAverage();
        var startClock = Stopwatch.StartNew();
        var child = Child.Start(v.Name, v.File, v.Args, Env(v, slot), s.Echo);
        using var w = new RunningWorker { Variant = v, Child = child, Slot = slot };
        await using var connection = await db.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", connection);
        command.Parameters.AddWithValue(slot);
        ulong from = 0;
        double cpu0 = 0;
        Stopwatch? clock = null;
        Profiler? profiler = null;
        try
        {
            while (true)
            {
                var confirmed = (ulong)(NpgsqlLogSequenceNumber)(await command.ExecuteScalarAsync())!;
                if (clock is null && confirmed >= warmEnd && confirmed < end)
                {
                    clock = Stopwatch.StartNew();
                    cpu0 = w.CpuSeconds();
                    from = confirmed;
                    profiler = Profiler.Start(s, [w], "drain");
                }
                if (confirmed >= end)
                {
                    if (clock is null)
                        throw new InvalidOperationException($"{v.Name}: the slot went from before the warm-up's end to the end in one reading: use more --drain-events");
                    var seconds = clock.Elapsed.TotalSeconds;
                    var cpu = w.CpuSeconds() - cpu0;
                    var events = Math.Round(s.DrainEvents * (double)(end - from) / (end - warmEnd));
                    return new DrainFigures
                    {
                        Events = events,
                        Seconds = seconds,
                        CpuSeconds = cpu,
                        CpuEvents = events,
                        PeakRssBytes = Proc.PeakRssBytes(w.Pid),
                        Note = $"from the slot confirming past the warm-up to confirming the end; {startClock.Elapsed.TotalSeconds:0.0} s from process start",
                        Load = $"{load} → {Proc.LoadAverage()}",
                    };
                }
                if (w.HasExited)
                    throw new InvalidOperationException($"{v.Name} exited: {child.Tail(20)}");
                if (startClock.Elapsed > TimeSpan.FromMinutes(30))
                    throw new TimeoutException($"{v.Name} did not confirm {RecvLogical.Lsn(end)} within 30 min");
                await Task.Delay(20);
            }
        }
        finally
        {
            if (profiler is not null)
                await profiler.DisposeAsync();
            await w.TerminateAsync();
        }
    }

    // ------------------------------------------------------------------ 6. brokers down

    async Task BackpressurePhaseAsync()
    {
        Say($"6. Brokers down while {s.BackpressureEvents:N0} events accrue (every variant at once, default in-flight bound, " +
            $"message.timeout.ms=1800000), then up until drained; load {Proc.LoadAverage()}");
        var extra = new Dictionary<string, string?> { ["Cdc__Kafka__Producer__message.timeout.ms"] = "1800000" };
        var workers = new List<RunningWorker>();
        try
        {
            for (var i = 0; i < variants.Count; i++)
            {
                await db.CreateSlotAsync(Slot("bp", i));
                workers.Add((await StartWorkerAsync(variants[i], Slot("bp", i), extra)).Worker);
            }
            var warm = await WriteAsync(2000, s.RowsPerTransaction);
            await CaughtUpAsync(workers, null, warm, TimeSpan.FromMinutes(2));
            var figures = workers.Select(w => new BackpressureFigures { RssBeforeBytes = Proc.RssBytes(w.Pid) }).ToList();

            using var sampling = new CancellationTokenSource();
            var sampler = Task.Run(async () =>
            {
                while (!sampling.IsCancellationRequested)
                {
                    for (var i = 0; i < workers.Count; i++)
                    {
                        try
                        {
                            var m = await workers[i].ScrapeAsync();
                            figures[i].InFlightEventsSeen = Math.Max(figures[i].InFlightEventsSeen, m.InFlightEvents);
                            figures[i].InFlightBytesSeen = Math.Max(figures[i].InFlightBytesSeen, m.InFlightBytes);
                        }
                        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                        {
                        }
                    }
                    try
                    {
                        await Task.Delay(250, sampling.Token);
                    }
                    catch (OperationCanceledException)
                    {
                    }
                }
            });

            await broker.CommandAsync("down");
            var end = await WriteAsync(s.BackpressureEvents, s.RowsPerTransaction);
            await Task.Delay(5000); // every worker reads up to its bound
            for (var i = 0; i < workers.Count; i++)
                figures[i].PeakWhileDownBytes = Proc.PeakRssBytes(workers[i].Pid);
            await broker.CommandAsync("up");
            var clock = Stopwatch.StartNew();
            var pending = Enumerable.Range(0, workers.Count).ToHashSet();
            while (pending.Count > 0 && clock.Elapsed < TimeSpan.FromMinutes(15))
            {
                foreach (var i in pending.ToArray())
                {
                    if (await db.ConfirmedLsnAsync(workers[i].Slot) >= end)
                    {
                        figures[i].DrainSeconds = clock.Elapsed.TotalSeconds;
                        figures[i].Drained = true;
                        pending.Remove(i);
                    }
                }
                await Task.Delay(50);
            }
            await sampling.CancelAsync();
            await sampler;
            for (var i = 0; i < workers.Count; i++)
            {
                var f = figures[i];
                f.PeakBytes = Proc.PeakRssBytes(workers[i].Pid);
                F(workers[i].Variant.Name).Backpressure = f;
                Say($"   {workers[i].Variant.Name}: RSS {Mb(f.RssBeforeBytes)} MB before, peak {Mb(f.PeakWhileDownBytes)} MB while down, {Mb(f.PeakBytes)} MB " +
                    $"with the drain ({(f.Drained ? $"{f.DrainSeconds:0.0} s" : "NOT drained")}); in flight up to {f.InFlightEventsSeen:N0} events / {f.InFlightBytesSeen / 1048576:0.0} MiB");
            }
        }
        finally
        {
            foreach (var w in workers)
            {
                await w.TerminateAsync();
                w.Dispose();
            }
            for (var i = 0; i < variants.Count; i++)
                await db.DropSlotAsync(Slot("bp", i));
        }
    }

    static double? Finite(double v) => double.IsFinite(v) ? Math.Round(v, 2) : null;

    internal static string Mb(long? bytes) => bytes is { } b ? (b / 1048576.0).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture) : "—";
}

/// <summary>
/// Profilers attached to the workers for one measured window (<c>--profile DIR</c>, <c>--profile-kinds</c> of
/// counters (dotnet-counters), cpu and gc (dotnet-trace), JIT variants only; perf (perf record -g), any variant); nothing
/// otherwise. Only for profiling runs: attaching costs the worker CPU.
/// </summary>
sealed class Profiler : IAsyncDisposable
{
    static readonly Profiler None = new([], []);
    static int _sequence;
    readonly List<Child> _tools;
    readonly List<(string File, int Pid, Dictionary<int, ThreadSample> Before, Stopwatch Clock)> _threads;

    Profiler(List<Child> tools, List<(string, int, Dictionary<int, ThreadSample>, Stopwatch)> threads)
    {
        _tools = tools;
        _threads = threads;
    }

    /// <summary>A thread's name, CPU ticks and context switches, from /proc/&lt;pid&gt;/task/&lt;tid&gt;.</summary>
    readonly record struct ThreadSample(string Name, long Ticks, long Voluntary, long Involuntary);

    static Dictionary<int, ThreadSample> Threads(int pid)
    {
        var result = new Dictionary<int, ThreadSample>();
        foreach (var dir in Directory.EnumerateDirectories($"/proc/{pid}/task"))
        {
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                var name = stat[(stat.IndexOf('(') + 1)..stat.LastIndexOf(')')];
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                long voluntary = 0, involuntary = 0;
                foreach (var line in File.ReadLines(Path.Combine(dir, "status")))
                {
                    if (line.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal))
                        voluntary = long.Parse(line.Split(':')[1].Trim(), System.Globalization.CultureInfo.InvariantCulture);
                    else if (line.StartsWith("nonvoluntary_ctxt_switches:", StringComparison.Ordinal))
                        involuntary = long.Parse(line.Split(':')[1].Trim(), System.Globalization.CultureInfo.InvariantCulture);
                }
                result[int.Parse(Path.GetFileName(dir), System.Globalization.CultureInfo.InvariantCulture)] =
                    new ThreadSample(name, long.Parse(fields[11], System.Globalization.CultureInfo.InvariantCulture) +
                                           long.Parse(fields[12], System.Globalization.CultureInfo.InvariantCulture), voluntary, involuntary);
            }
            catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException)
            {
                // the thread ended meanwhile
            }
        }
        return result;
    }

    public static Profiler Start(FootprintSettings s, IEnumerable<RunningWorker> workers, string phase)
    {
        if (s.ProfileDirectory is null)
            return None;
        Directory.CreateDirectory(s.ProfileDirectory);
        var tools = new List<Child>();
        var threads = new List<(string, int, Dictionary<int, ThreadSample>, Stopwatch)>();
        var home = Environment.GetEnvironmentVariable("HOME") ?? "/root";
        foreach (var w in workers)
        {
            var stem = Path.Combine(s.ProfileDirectory, $"{w.Variant.Name}-{phase}-{Interlocked.Increment(ref _sequence)}");
            var pid = w.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture);
            foreach (var kind in s.ProfileKinds.Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                if (kind == "threads")
                {
                    // CPU and context switches per thread over the window, from /proc: who wakes up how often.
                    threads.Add((stem + ".threads.txt", w.Pid, Threads(w.Pid), Stopwatch.StartNew()));
                    continue;
                }
                if (kind == "perf")
                {
                    // Any build: the native binary's symbols come from Cdc.Worker.dbg beside it; JIT frames need
                    // --worker-env DOTNET_PerfMapEnabled=1.
                    tools.Add(Child.Start("perf", "perf", ["record", "-F", "999", "-g", "-p", pid, "-o", stem + ".perf.data"]));
                    continue;
                }
                if (w.Variant.File != "dotnet")
                    continue; // EventPipe tools: JIT builds only
                string[]? args = kind switch
                {
                    "counters" => ["collect", "-p", pid, "--refresh-interval", "1", "--format", "csv", "-o", stem + ".counters.csv",
                                   "--counters", "System.Runtime"],
                    "cpu" => ["collect", "-p", pid, "--profile", "dotnet-sampled-thread-time", "-o", stem + ".cpu.nettrace"],
                    "gc" => ["collect", "-p", pid, "--profile", "gc-verbose", "-o", stem + ".gc.nettrace"],
                    _ => null,
                };
                if (args is null)
                    continue;
                var tool = Path.Combine(home, ".dotnet", "tools", kind == "counters" ? "dotnet-counters" : "dotnet-trace");
                tools.Add(Child.Start($"{kind}", tool, args));
            }
        }
        if (tools.Any(t => t.Name != "perf"))
            Thread.Sleep(1500); // EventPipe sessions attached before the window starts
        return new Profiler(tools, threads);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var (file, pid, before, clock) in _threads)
        {
            var after = Threads(pid);
            var seconds = clock.Elapsed.TotalSeconds;
            var rows = after.Select(kv =>
            {
                var b = before.GetValueOrDefault(kv.Key);
                return (kv.Value.Name, Tid: kv.Key, Ticks: kv.Value.Ticks - b.Ticks, Voluntary: kv.Value.Voluntary - b.Voluntary,
                    Involuntary: kv.Value.Involuntary - b.Involuntary);
            }).Where(r => r.Ticks > 0 || r.Voluntary > 0).OrderByDescending(r => r.Ticks).ThenByDescending(r => r.Voluntary).ToList();
            var text = new System.Text.StringBuilder();
            text.AppendLine(System.FormattableString.Invariant($"{seconds:0.0} s; per thread: CPU ms, voluntary and involuntary context switches per second"));
            foreach (var (name, group) in rows.GroupBy(r => r.Name).Select(g => (g.Key, g.ToList())).OrderByDescending(g => g.Item2.Sum(r => r.Ticks)))
                text.AppendLine(System.FormattableString.Invariant(
                    $"{name,-16} x{group.Count(),-3} cpu {group.Sum(r => r.Ticks) * 1000.0 / Proc.ClockTicks,8:0} ms  vol {group.Sum(r => r.Voluntary) / seconds,8:0}/s  invol {group.Sum(r => r.Involuntary) / seconds,6:0}/s"));
            text.AppendLine(System.FormattableString.Invariant(
                $"total cpu {rows.Sum(r => r.Ticks) * 1000.0 / Proc.ClockTicks:0} ms, {rows.Sum(r => r.Voluntary) / seconds:0} voluntary switches/s"));
            await File.WriteAllTextAsync(file, text.ToString());
        }
        foreach (var tool in _tools)
        {
            if (!tool.HasExited)
                Proc.Signal(tool.Pid, 2); // SIGINT: stop and write the file
        }
        foreach (var tool in _tools)
        {
            await tool.WaitForExitAsync(TimeSpan.FromSeconds(60));
            tool.Dispose();
        }
    }
}
