using System.Diagnostics;

namespace Cdc.Benchmarks;

sealed partial class Suite
{
    /// <summary>
    /// a. pg_recvlogical on the second slot (advanced past the warm-up first), writing to /dev/null: the server's own
    /// decode rate. Timed like b once streaming: from the first reading of its walsender's sent_lsn
    /// (pg_stat_replication) past the warm-up's end to its exit at --endpos, events counted pro rata of WAL between
    /// the two; the start-to-exit time is in the note.
    /// </summary>
    async Task RecvLogicalAsync(DrainResult r, ulong warmEnd, ulong end)
    {
        await _db.ScalarAsync($"SELECT pg_replication_slot_advance('{RecvSlot}', '{Lsn(warmEnd)}')");
        var tool = Path.Combine(PgBinDirectory(), "pg_recvlogical");
        string[] recv =
        [
            tool, "-d", $"host=127.0.0.1 port={_pg.Port} user=postgres dbname=postgres application_name=bench_recv",
            "--slot", RecvSlot, "--start", "-o", "proto_version=1", "-o", $"publication_names={Database.Publication}",
            "-o", "binary=true", "-f", "/dev/null", "--endpos", Lsn(end), "--no-loop",
        ];
        // The shell waits for pg_recvlogical, then prints its own /proc stat: cutime+cstime is pg_recvlogical's CPU.
        string[] shell = ["sh", "-c", "\"$@\"; rc=$?; cat /proc/$$/stat; exit $rc", "sh", .. recv];
        var (file, args) = Proc.IsRoot ? ("runuser", (string[])["-u", "postgres", "--", .. shell]) : (shell[0], shell[1..]);

        await using var connection = await _db.OpenAsync();
        await using var sent = new Npgsql.NpgsqlCommand("SELECT sent_lsn FROM pg_stat_replication WHERE application_name = 'bench_recv'", connection);
        var server0 = Proc.ServerCpuSeconds(_postmasterPid);
        var total = Stopwatch.StartNew();
        using var child = Child.Start("pg_recvlogical", file, args);
        Stopwatch? clock = null;
        ulong from = 0;
        while (!child.HasExited && total.Elapsed < TimeSpan.FromMinutes(30))
        {
            if (clock is null && await sent.ExecuteScalarAsync() is NpgsqlTypes.NpgsqlLogSequenceNumber lsn && (ulong)lsn > warmEnd)
            {
                clock = Stopwatch.StartNew();
                from = (ulong)lsn;
            }
            await Task.Delay(clock is null ? 5 : 20);
        }
        var exit = await child.WaitForExitAsync(TimeSpan.FromSeconds(10));
        r.Seconds = clock?.Elapsed.TotalSeconds ?? 0;
        r.ServerCpuSeconds = Proc.ServerCpuSeconds(_postmasterPid) - server0;
        var confirmed = await _db.ConfirmedLsnAsync(RecvSlot);
        if (exit != 0 || confirmed < end || clock is null)
            throw new InvalidOperationException($"pg_recvlogical exited {exit}, slot at {Lsn(confirmed)} (end {Lsn(end)}), " +
                                                $"{(clock is null ? "never seen streaming" : "")}: {child.Tail(10)}");
        var stat = child.Output.Split('\n').Last(l => l.Contains("(sh)"));
        r.ProcessCpuSeconds = Proc.WaitedChildrenCpuSeconds(stat);
        r.Events = Math.Round(o.Events * (double)(end - from) / (end - warmEnd));
        var startToExit = total.Elapsed.TotalSeconds;
        r.Note = $"timed from its walsender's sent_lsn passing the warm-up's end to its exit at --endpos (start to exit: {startToExit:0.00} s " +
                 $"= {o.Events / startToExit:N0} events/s); client CPU is pg_recvlogical's (writes to /dev/null, whole run)";
    }

    /// <summary>
    /// b. The worker binary on the backlog. Timing and CPU start when the slot's confirmed position passes the warm-up's
    /// end (the worker has started, connected and relayed the warm-up rows) and stop when it reaches the backlog's end
    /// (every event acknowledged by Kafka). The events counted are those between the two readings, pro rata of WAL.
    /// </summary>
    async Task ConnectorDrainAsync(DrainResult r, ulong warmEnd, ulong end)
    {
        var env = Worker.EnvironmentFor(_pg.ConnectionString, _broker.BootstrapServers, CdcSlot, overrides: o.WorkerEnv);
        var started = Stopwatch.StartNew();
        using var worker = await Worker.StartAsync(env, o.Echo);
        var startup = started.Elapsed;

        await using var connection = await _db.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", connection);
        command.Parameters.AddWithValue(CdcSlot);
        async Task<ulong> Confirmed() => (ulong)(NpgsqlTypes.NpgsqlLogSequenceNumber)(await command.ExecuteScalarAsync())!;

        ulong from = 0;
        Child? perf = null;
        double cpu0 = 0, server0 = 0;
        Stopwatch? clock = null;
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var confirmed = await Confirmed();
            if (clock is null && confirmed >= warmEnd && confirmed < end)
            {
                clock = Stopwatch.StartNew();
                perf = StartPerf(worker.Pid);
                cpu0 = worker.CpuSeconds();
                server0 = Proc.ServerCpuSeconds(_postmasterPid);
                from = confirmed;
            }
            if (confirmed >= end)
            {
                if (clock is null)
                    throw new InvalidOperationException("the slot went from before the warm-up's end to the backlog's end in one reading: use more --events");
                r.Seconds = clock.Elapsed.TotalSeconds;
                r.ProcessCpuSeconds = worker.CpuSeconds() - cpu0;
                r.ServerCpuSeconds = Proc.ServerCpuSeconds(_postmasterPid) - server0;
                r.PeakRssBytes = worker.PeakRssBytes();
                await StopPerfAsync(perf);
                break;
            }
            if (worker.HasExited)
                throw new InvalidOperationException($"the worker exited: {worker.Tail(20)}");
            if (deadline.Elapsed > TimeSpan.FromMinutes(30))
                throw new TimeoutException($"the worker did not confirm {Lsn(end)} within 30 min (at {Lsn(confirmed)})");
            await Task.Delay(20);
        }
        r.Events = Math.Round(o.Events * (double)(end - from) / (end - warmEnd));
        r.Note = $"measured from the slot passing the warm-up ({o.Warmup:N0} events; start-up to streaming {startup.TotalSeconds:0.0} s) to confirmed_flush_lsn >= end; Release worker, default settings, ConfirmInterval 100 ms";
        await worker.TerminateAsync();
    }

    /// <summary>perf record -g of the worker into --perf FILE (needs DOTNET_PerfMapEnabled=1 for managed frames).</summary>
    Child? StartPerf(int pid) => o.PerfFile is null ? null
        : Child.Start("perf", "perf", ["record", "-F", "499", "-g", "-p", pid.ToString(), "-o", o.PerfFile]);

    static async Task StopPerfAsync(Child? perf)
    {
        if (perf is null)
            return;
        using (var stop = Process.Start("kill", ["-INT", perf.Pid.ToString()]))
            await stop.WaitForExitAsync();
        await perf.WaitForExitAsync(TimeSpan.FromSeconds(60));
        perf.Dispose();
    }

    /// <summary>
    /// c. The worker binary in polling mode (<c>Cdc__Postgres__Mode=Polling</c>, default batch and interval) on a copy of
    /// the same rows in outbox_poll (indexed on (created_at, id)). Timing and CPU start when its
    /// <c>cdc_events_published_total</c> passes the warm-up and stop when it reaches the backlog's end, read from its
    /// /metrics every 100 ms (a reading costs the worker well under a millisecond); the events counted are those between
    /// the two readings. Afterwards the table must be empty, and the VACUUM the deletes call for is timed on its own.
    /// </summary>
    async Task PollingDrainAsync(DrainResult r)
    {
        await _db.ExecAsync("INSERT INTO public.outbox_poll SELECT * FROM public.outbox");
        await _db.ExecAsync("VACUUM ANALYZE public.outbox_poll");
        var env = Worker.EnvironmentFor(_pg.ConnectionString, _broker.BootstrapServers, "bench_polling_unused",
            extra: new Dictionary<string, string?> { ["Cdc__Postgres__Mode"] = "Polling", ["Cdc__Postgres__Table"] = "public.outbox_poll" },
            overrides: o.WorkerEnv);
        var started = Stopwatch.StartNew();
        using var worker = await Worker.StartAsync(env, o.Echo, readyLine: "Polling table");
        var startup = started.Elapsed;

        double cpu0 = 0, server0 = 0, published0 = 0;
        Stopwatch? clock = null;
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var published = (await worker.ScrapeAsync()).Published;
            if (clock is null && published >= o.Warmup && published < o.Warmup + o.Events)
            {
                clock = Stopwatch.StartNew();
                cpu0 = worker.CpuSeconds();
                server0 = Proc.ServerCpuSeconds(_postmasterPid);
                published0 = published;
            }
            if (published >= o.Warmup + o.Events)
            {
                if (clock is null)
                    throw new InvalidOperationException("the worker went from before the warm-up's end to the backlog's end in one reading: use more --events");
                r.Seconds = clock.Elapsed.TotalSeconds;
                r.ProcessCpuSeconds = worker.CpuSeconds() - cpu0;
                r.ServerCpuSeconds = Proc.ServerCpuSeconds(_postmasterPid) - server0;
                r.PeakRssBytes = worker.PeakRssBytes();
                r.Events = published - published0;
                break;
            }
            if (worker.HasExited)
                throw new InvalidOperationException($"the worker exited: {worker.Tail(20)}");
            if (deadline.Elapsed > TimeSpan.FromMinutes(30))
                throw new TimeoutException($"the polling worker did not publish {o.Warmup + o.Events:N0} events within 30 min (at {published:N0})");
            await Task.Delay(100);
        }
        // The last batch is deleted and committed right after its acknowledgements.
        long left = -1;
        for (var wait = Stopwatch.StartNew(); wait.Elapsed < TimeSpan.FromSeconds(30) && left != 0; await Task.Delay(50))
            left = Convert.ToInt64(await _db.ScalarAsync("SELECT count(*) FROM public.outbox_poll"));
        if (left != 0)
            throw new InvalidOperationException($"{left} rows still in outbox_poll after every event was published");
        await worker.TerminateAsync();

        var vacuumServer0 = Proc.ServerCpuSeconds(_postmasterPid);
        var vacuum = Stopwatch.StartNew();
        await _db.ExecAsync("VACUUM public.outbox_poll");
        var vacuumCpu = Proc.ServerCpuSeconds(_postmasterPid) - vacuumServer0;
        r.Note = $"the worker in polling mode (Cdc__Postgres__Mode=Polling, default BatchSize 1000 and Interval 500 ms; start-up to polling " +
                 $"{startup.TotalSeconds:0.0} s) on a copy of the rows in outbox_poll, indexed on (created_at, id); measured from " +
                 $"cdc_events_published_total passing the warm-up ({o.Warmup:N0} events) to the backlog's end, read from /metrics every " +
                 $"100 ms; the table empty afterwards. The deletes leave dead rows: VACUUM afterwards took {vacuum.Elapsed.TotalSeconds:0.0} s " +
                 $"and {vacuumCpu:0.00} server CPU s ({vacuumCpu / (o.Warmup + o.Events) * 1e6:0.0} s per million events), not in the table's server CPU";
        r.Extra["vacuum_seconds"] = Math.Round(vacuum.Elapsed.TotalSeconds, 2);
        r.Extra["vacuum_server_cpu_seconds"] = Math.Round(vacuumCpu, 2);
    }

    /// <summary>d. Wolverine's durable outbox (child process): publish through the outbox until its table is empty.</summary>
    async Task WolverineDrainAsync(DrainResult r)
    {
        var warmup = Math.Min(o.Warmup, 5000);
        var end = await MeasuredChildAsync(r, "wolverine",
            ["--wolverine", _pg.ConnectionString, _broker.BootstrapServers, o.WolverineEvents.ToString(), warmup.ToString(),
             o.Writers.ToString(), o.RowsPerTransaction.ToString()]);
        var writeSeconds = double.Parse(end.Split(' ')[3], System.Globalization.CultureInfo.InvariantCulture);
        r.Note = $"writes included: {o.Writers} writers publish {o.RowsPerTransaction} messages per transaction (enlisted, flushed after commit), " +
                 $"all written after {writeSeconds:0.0} s, drained = wolverine_outgoing_envelopes empty; warm-up {warmup:N0}";
    }

    /// <summary>Runs a child mode of this app that prints START and END; its CPU is read from /proc at those lines.</summary>
    async Task<string> MeasuredChildAsync(DrainResult r, string name, string[] args)
    {
        using var child = Child.StartSelf(name, args, echo: o.Echo);
        try
        {
            await child.WaitForLineAsync("START", TimeSpan.FromMinutes(10));
            var cpu0 = Proc.CpuSeconds(child.Pid);
            var server0 = Proc.ServerCpuSeconds(_postmasterPid);
            var end = await child.WaitForLineAsync("END ", TimeSpan.FromMinutes(60));
            r.ProcessCpuSeconds = Proc.CpuSeconds(child.Pid) - cpu0;
            r.ServerCpuSeconds = Proc.ServerCpuSeconds(_postmasterPid) - server0;
            r.PeakRssBytes = Proc.PeakRssBytes(child.Pid);
            var parts = end.Split(' ');
            r.Events = double.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
            r.Seconds = double.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture);
            child.CloseInput();
            await child.WaitForExitAsync(TimeSpan.FromSeconds(30));
            return end;
        }
        catch
        {
            child.Kill();
            throw;
        }
    }

    static string Lsn(ulong lsn) => $"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}";

    static string PgBinDirectory() => RecvLogical.BinDirectory();
}
