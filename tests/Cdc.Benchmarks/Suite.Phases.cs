using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Cdc.Benchmarks;

sealed partial class Suite
{
    // ---------------------------------------------------------------- 2. latency at fixed rates

    async Task LatencyPhaseAsync()
    {
        Say($"2. Latency at fixed rates ({string.Join(", ", o.Rates)} events/s, {o.LatencySeconds} s each, {o.LatencyRowsPerTransaction} rows/tx); load {Proc.LoadAverage()}");
        const string slot = "bench_latency";
        var env = Worker.EnvironmentFor(_pg.ConnectionString, _broker.BootstrapServers, slot,
            new Dictionary<string, string?> { ["Cdc__Kafka__Producer__message.timeout.ms"] = "300000" }, o.WorkerEnv);
        using var worker = await Worker.StartAsync(env, o.Echo);
        try
        {
            // Warm-up: a few thousand events through the whole path before the first measured rate.
            await RunRateAsync(2000, 2, o.LatencyRowsPerTransaction);
            await WaitCaughtUpAsync(slot, worker, TimeSpan.FromSeconds(60));

            // What streaming costs with nothing to relay: a floor under the per-event CPU at low rates.
            var idle0 = worker.CpuSeconds();
            var idleClock = Stopwatch.StartNew();
            await Task.Delay(TimeSpan.FromSeconds(5));
            _result.WorkerIdleCores = Math.Round((worker.CpuSeconds() - idle0) / idleClock.Elapsed.TotalSeconds, 3);
            Say($"   worker idle: {_result.WorkerIdleCores:0.000} cores");

            foreach (var rate in o.Rates)
            {
                var r = new LatencyResult { TargetRate = rate, LoadStart = Proc.LoadAverage() };
                var before = await worker.ScrapeAsync();
                var cpu0 = worker.CpuSeconds();
                var (rows, seconds) = await RunRateAsync(rate, o.LatencySeconds, o.LatencyRowsPerTransaction);
                r.CaughtUp = await WaitCaughtUpAsync(slot, worker, TimeSpan.FromSeconds(120));
                var after = await worker.ScrapeAsync();
                var cpu = worker.CpuSeconds() - cpu0;
                var summary = LatencySummary.Between(before, after);
                r.Seconds = Math.Round(seconds, 2);
                r.AchievedRate = Math.Round(rows / seconds);
                r.Events = summary.Count;
                r.P50Ms = Finite(summary.P50Ms);
                r.P99Ms = Finite(summary.P99Ms);
                r.MaxBoundMs = Finite(summary.MaxBoundMs);
                r.MeanMs = Finite(summary.MeanMs);
                r.WorkerCpuMicrosPerEvent = summary.Count > 0 ? Math.Round(cpu / summary.Count * 1e6, 1) : null;
                r.LoadEnd = Proc.LoadAverage();
                _result.Latency.Add(r);
                Say($"   {rate:N0}/s: achieved {r.AchievedRate:N0}/s, {summary.Count:N0} events, p50 {r.P50Ms:0.0} ms, p99 {r.P99Ms:0.0} ms, " +
                    $"max <= {r.MaxBoundMs:0} ms, mean {r.MeanMs:0.0} ms, worker {r.WorkerCpuMicrosPerEvent} µs CPU/event{(r.CaughtUp ? "" : " (NOT caught up)")}; load {r.LoadEnd}");
            }
            _result.HighestRateWithP99Under100Ms = _result.Latency
                .Where(l => l.P99Ms is < 100 && l.CaughtUp).Select(l => (double?)l.AchievedRate).Max();
        }
        finally
        {
            await worker.TerminateAsync();
            await _db.DropSlotAsync(slot);
        }
    }

    static double? Finite(double v) => double.IsFinite(v) ? Math.Round(v, 2) : null;

    async Task<bool> WaitCaughtUpAsync(string slot, Worker worker, TimeSpan timeout) =>
        await _db.WaitConfirmedAsync(slot, await _db.CurrentLsnAsync(), timeout, () => worker.HasExited);

    async Task<(long Rows, double Seconds)> RunRateAsync(double rate, double seconds, int rowsPerTx)
    {
        var (rows, elapsed, next) = await _db.PacedWriteAsync(_nextRow, rate, seconds, rowsPerTx, o.Writers);
        _nextRow = next;
        return (rows, elapsed);
    }

    // ---------------------------------------------------------------- 3. memory under backpressure

    async Task BackpressurePhaseAsync()
    {
        const string slot = "bench_backpressure";
        const string timeout = "1800000";
        var r = new BackpressureResult
        {
            Events = o.BackpressureEvents,
            MaxInFlightEvents = o.MaxInFlightEvents,
            MaxInFlightBytes = o.MaxInFlightBytes,
            MessageTimeoutMs = timeout,
            LoadStart = Proc.LoadAverage(),
        };
        Say($"3. Memory under backpressure: brokers down while {o.BackpressureEvents:N0} events accrue; load {r.LoadStart}");
        var env = Worker.EnvironmentFor(_pg.ConnectionString, _broker.BootstrapServers, slot, new Dictionary<string, string?>
        {
            ["Cdc__Relay__MaxInFlightEvents"] = o.MaxInFlightEvents.ToString(),
            ["Cdc__Relay__MaxInFlightBytes"] = o.MaxInFlightBytes.ToString(),
            ["Cdc__Kafka__Producer__message.timeout.ms"] = timeout,
        }, o.WorkerEnv);
        using var worker = await Worker.StartAsync(env, o.Echo);
        try
        {
            await _db.WriteRowsAsync("public.outbox", _nextRow, 2000, o.RowsPerTransaction, o.Writers);
            _nextRow += 2000;
            await WaitCaughtUpAsync(slot, worker, TimeSpan.FromSeconds(60));
            r.RssAtStartBytes = worker.RssBytes();

            using var sampling = new CancellationTokenSource();
            var sampler = Task.Run(async () =>
            {
                while (!sampling.IsCancellationRequested)
                {
                    try
                    {
                        var m = await worker.ScrapeAsync();
                        r.MaxInFlightEventsSeen = Math.Max(r.MaxInFlightEventsSeen, m.InFlightEvents);
                        r.MaxInFlightBytesSeen = Math.Max(r.MaxInFlightBytesSeen, m.InFlightBytes);
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException) { }
                    try { await Task.Delay(250, sampling.Token); } catch (OperationCanceledException) { }
                }
            });

            await _broker.CommandAsync("down");
            var down = Stopwatch.StartNew();
            r.WriteSeconds = Math.Round((await _db.WriteRowsAsync("public.outbox", _nextRow, o.BackpressureEvents, o.RowsPerTransaction, o.Writers)).TotalSeconds, 1);
            _nextRow += o.BackpressureEvents;
            var end = await _db.CurrentLsnAsync();
            await Task.Delay(TimeSpan.FromSeconds(5)); // let the worker read up to its bound
            r.PeakRssWhileDownBytes = worker.PeakRssBytes();
            r.DownSeconds = Math.Round(down.Elapsed.TotalSeconds, 1);
            Say($"   brokers down {r.DownSeconds} s; wrote {o.BackpressureEvents:N0} in {r.WriteSeconds} s; worker peak RSS {r.PeakRssWhileDownBytes / 1048576.0:0} MB, " +
                $"in flight up to {r.MaxInFlightEventsSeen:N0} events / {r.MaxInFlightBytesSeen / 1048576.0:0.0} MiB");

            await _broker.CommandAsync("up");
            var drain = Stopwatch.StartNew();
            r.Drained = await _db.WaitConfirmedAsync(slot, end, TimeSpan.FromMinutes(15), () => worker.HasExited);
            r.DrainSeconds = r.Drained ? Math.Round(drain.Elapsed.TotalSeconds, 1) : null;
            r.PeakRssBytes = worker.PeakRssBytes();
            await sampling.CancelAsync();
            await sampler;
            r.LoadEnd = Proc.LoadAverage();
            Say($"   brokers up: {(r.Drained ? $"drained in {r.DrainSeconds} s" : "NOT drained within 15 min")}; worker peak RSS {r.PeakRssBytes / 1048576.0:0} MB; load {r.LoadEnd}");
        }
        finally
        {
            _result.Backpressure = r;
            await worker.TerminateAsync();
            await _db.DropSlotAsync(slot);
        }
    }

    // ---------------------------------------------------------------- context and targets

    internal static Dictionary<string, object?> Machine()
    {
        string? Git(params string[] args)
        {
            try
            {
                using var p = Process.Start(new ProcessStartInfo("git", args) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = AppContext.BaseDirectory })!;
                var text = p.StandardOutput.ReadToEnd().Trim();
                p.WaitForExit();
                return p.ExitCode == 0 ? text : null;
            }
            catch (System.ComponentModel.Win32Exception) { return null; }
        }
        var memKb = File.ReadLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:")).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1];
        return new()
        {
            ["nproc"] = Environment.ProcessorCount,
            ["cpu"] = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim(),
            ["memory_gib"] = Math.Round(long.Parse(memKb) / 1048576.0, 1),
            ["os"] = RuntimeInformation.OSDescription,
            ["dotnet"] = RuntimeInformation.FrameworkDescription,
            ["commit"] = Git("rev-parse", "--short", "HEAD") + (string.IsNullOrEmpty(Git("status", "--porcelain", "--untracked-files=no")) ? "" : "-dirty"),
            ["clock_ticks"] = Proc.ClockTicks,
            ["worker_build"] = Cdc.Embedded.WorkerBinary.Configuration,
            ["started"] = DateTime.UtcNow.ToString("u"),
            ["load_start"] = Proc.LoadAverage(),
        };
    }

    void Targets()
    {
        var t = _result.Targets;
        string Check(bool ok) => ok ? "met" : "MISSED";
        foreach (var (ratio, want) in new[] { ("b/a", 0.8), ("b/c", 5.0), ("b/d", 3.0) })
            if (_result.Ratios.TryGetValue(ratio, out var v))
                t.Add(v is { } x ? $"drain {ratio} >= {want}: {x:0.00} ({Check(x >= want)})" : $"drain {ratio} >= {want}: not measured");
        if (_result.Drains.FirstOrDefault(d => d.Name == "b" && d.Error is null) is { } b)
        {
            var us = b.CpuSecondsPerMillion;
            t.Add($"connector CPU while draining <= 8 µs/event: {us:0.0} µs ({Check(us <= 8)})");
            t.Add($"peak RSS in the drain <= 150 MB: {b.PeakRssBytes / 1048576.0:0} MB ({Check(b.PeakRssBytes <= 150L * 1048576)})");
        }
        if (_result.Latency.FirstOrDefault(l => l.TargetRate == 5000) is { } five)
            t.Add($"p99 <= 25 ms at 5k events/s: {five.P99Ms:0.0} ms at {five.AchievedRate:N0}/s achieved ({Check(five.P99Ms <= 25 && five.AchievedRate >= 4500)})");
        if (_result.Backpressure is { } bp)
            t.Add($"peak RSS under backpressure <= 150 MB: {bp.PeakRssBytes / 1048576.0:0} MB ({Check(bp.PeakRssBytes <= 150L * 1048576)}); drained after brokers up: {(bp.Drained ? "yes" : "NO")}");
    }
}
