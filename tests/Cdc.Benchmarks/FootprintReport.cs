using System.Globalization;
using System.Text;

namespace Cdc.Benchmarks;

/// <summary>Everything <c>--footprint</c> measured, per variant (and pg_recvlogical), as written to its JSON.</summary>
sealed class FootprintResult
{
    public Dictionary<string, object?> Machine { get; set; } = [];
    public FootprintSettings? Settings { get; set; }
    public List<VariantInfo> Variants { get; set; } = [];
    public Dictionary<string, object?> Workload { get; set; } = [];
    public Dictionary<string, VariantFigures> Figures { get; } = [];
    public string? RateLoad { get; set; }
    public List<string> Notes { get; } = [];
    public string? Report { get; set; }
}

sealed class VariantFigures
{
    public List<double> StartMs { get; } = [];
    public double? StartMedianMs => Median(StartMs);
    public List<double> LoggedMs { get; } = [];
    public double? LoggedMedianMs => Median(LoggedMs);
    public List<double> StartCpuSeconds { get; } = [];
    public double? StartCpuMedianSeconds => Median(StartCpuSeconds);

    public long? RssAfterStartBytes { get; set; }
    public long? IdleRssBytes { get; set; }
    public long? IdleRssMaxBytes { get; set; }
    public long? IdleAnonymousBytes { get; set; }
    public int? IdleThreads { get; set; }
    public double? IdleCores { get; set; }

    public double? RateAchieved { get; set; }
    public double? RateEvents { get; set; }
    public double? RateCpuMicrosPerEvent { get; set; }
    public long? RatePeakRssBytes { get; set; }
    public double? RateP50Ms { get; set; }
    public double? RateP99Ms { get; set; }

    public BurstFigures? Paused { get; set; }
    public BurstFigures? Restarted { get; set; }
    /// <summary>Every round of the steady drain (--drain-repeat), in order.</summary>
    public List<DrainFigures> Drains { get; } = [];
    /// <summary>Medians over the rounds (the peak RSS: the highest).</summary>
    public double? DrainEventsPerSecond => Median(Drains.Select(d => d.EventsPerSecond).ToList());
    public double? DrainCpuMicrosPerEvent => Median(Drains.Select(d => d.CpuMicrosPerEvent).ToList());
    public long? DrainPeakRssBytes => Drains.Count == 0 ? null : Drains.Max(d => d.PeakRssBytes);
    public BackpressureFigures? Backpressure { get; set; }

    internal static double? Median(List<double> values)
    {
        if (values.Count == 0)
            return null;
        var sorted = values.Order().ToList();
        var mid = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}

sealed class BurstFigures
{
    public double Events { get; set; }
    public double Seconds { get; set; }
    public double CpuSeconds { get; set; }
    public double CpuMicrosPerEvent => CpuSeconds / Events * 1e6;
    /// <summary>Restarted bursts: the CPU spent until the slot was active (starting, before any event).</summary>
    public double? StartCpuSeconds { get; set; }
    public double? CpuMicrosPerEventAfterStart => StartCpuSeconds is { } start ? (CpuSeconds - start) / Events * 1e6 : null;
    public long PeakRssBytes { get; set; }
}

sealed class DrainFigures
{
    /// <summary>Events in the timed window (pro rata of WAL between its two readings).</summary>
    public double Events { get; set; }
    public double Seconds { get; set; }
    public double EventsPerSecond => Seconds > 0 ? Events / Seconds : 0;
    public double CpuSeconds { get; set; }
    /// <summary>The events <see cref="CpuSeconds"/> covers (pg_recvlogical: its whole run; workers: the timed window).</summary>
    public double CpuEvents { get; set; }
    public double CpuMicrosPerEvent => CpuSeconds / CpuEvents * 1e6;
    public long PeakRssBytes { get; set; }
    public string? Note { get; set; }
    public string? Load { get; set; }
}

sealed class BackpressureFigures
{
    public long RssBeforeBytes { get; set; }
    public long PeakWhileDownBytes { get; set; }
    public long PeakBytes { get; set; }
    public double InFlightEventsSeen { get; set; }
    public double InFlightBytesSeen { get; set; }
    public double? DrainSeconds { get; set; }
    public bool Drained { get; set; }
}

/// <summary>The printed table of <c>--footprint</c>: issue 11's figures, one column per variant, ratios, targets.</summary>
static class FootprintReport
{
    const string Recv = "pg_recvlogical";
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Table(FootprintResult r)
    {
        var sb = new StringBuilder();
        var m = r.Machine;
        var s = r.Settings!;
        sb.AppendLine($"Machine: {m["nproc"]} cores ({m["cpu"]}), {m["memory_gib"]} GiB; {m["os"]}; {m["dotnet"]}; commit {m["commit"]}; JIT build {m["worker_build"]}");
        sb.AppendLine($"PostgreSQL: {m.GetValueOrDefault("postgres")?.ToString()?.Split(" on ")[0]} (fsync and synchronous_commit on); Kafka: librdkafka mock cluster " +
                      "(Kafka-protocol test broker, not Apache Kafka), 3 brokers in a child process");
        sb.AppendLine((s.Workload == Workload.ThreeTopics
                          ? "Workload: aggregate types order, payment, shipment = 3 topics × 6 partitions (replication factor 3); jsonb payload "
                          : "Workload: the suite's, aggregate type order = 1 topic × 6 partitions (replication factor 3); jsonb payload ") +
                      $"{r.Workload.GetValueOrDefault("payload_bytes_avg") ?? "~150"} B, traceparent header {r.Workload.GetValueOrDefault("headers_bytes_avg") ?? "~75"} B; " +
                      $"{s.RowsPerTransaction} rows per transaction ({s.RateRowsPerTransaction} at the fixed rate), {s.Writers} writers");
        foreach (var v in r.Variants)
            sb.AppendLine($"- {v.Name}: `{v.Command}`{v.Environment}");
        sb.AppendLine("Workers run with their defaults (only addresses, table, slot and publication set).");
        sb.AppendLine();

        var names = r.Variants.Select(v => v.Name).ToList();
        var shipped = names.Contains("native") ? "native" : names[0];
        var cols = new List<string> { "figure", "target" };
        cols.AddRange(names);
        cols.Add(Recv);
        // --ratio A/B columns, else every other variant over the first.
        var ratios = s.Ratios.Count > 0
            ? s.Ratios.Select(r => r.Split('/')).Where(r => r.Length == 2 && names.Contains(r[0]) && names.Contains(r[1])).Select(r => (n: r[0], r[1])).ToList()
            : names.Where(n => n != names[0]).Select(n => (n, names[0])).ToList();
        cols.AddRange(ratios.Select(x => $"{x.n}/{x.Item2}"));
        cols.Add($"{shipped}/{Recv}");
        cols.Add($"{shipped} meets");
        sb.AppendRow([.. cols]);
        sb.AppendRow([.. cols.Select((_, i) => i < 2 ? "---" : i == cols.Count - 1 ? "---" : "---:")]);

        VariantFigures? Of(string name) => r.Figures.GetValueOrDefault(name);
        void Row(string figure, string target, Func<VariantFigures, double?> value, string format, Func<double, bool>? meets = null, bool recv = true)
        {
            var cells = new List<string> { figure, target };
            double? V(string name) => Of(name) is { } f ? value(f) : null;
            cells.AddRange(names.Select(n => Num(V(n), format)));
            cells.Add(recv ? Num(V(Recv), format) : "—");
            cells.AddRange(ratios.Select(x => Ratio(V(x.n), V(x.Item2))));
            cells.Add(recv ? Ratio(V(shipped), V(Recv)) : "—");
            cells.Add(meets is null || V(shipped) is not { } x ? "" : meets(x) ? "met" : "**MISSED**");
            sb.AppendRow([.. cells]);
        }

        var drainN = $"{s.DrainEvents:N0}";
        var rounds = s.DrainRepeat > 1 ? $", median of {s.DrainRepeat} rounds" : "";
        Row($"steady drain of {drainN} events: events/s{rounds}", "", f => f.DrainEventsPerSecond, "N0");
        Row("steady drain: worker rate / pg_recvlogical rate", "≥ 0.9", f => f.DrainEventsPerSecond / Of(Recv)?.DrainEventsPerSecond,
            "0.00", x => x >= 0.9, recv: false);
        Row("steady drain: CPU per event (µs)", "≤ 6", f => f.DrainCpuMicrosPerEvent, "0.00", x => x <= 6);
        Row("steady drain: peak RSS (MB)", "≤ 80", f => Mb(f.DrainPeakRssBytes), "0.0", x => x <= 80);
        Row($"burst of {s.Burst:N0} after a stop, fresh start: CPU per event, start included (µs)", "≤ 8", f => f.Restarted?.CpuMicrosPerEvent, "0.00", x => x <= 8);
        Row("  the same without the start (CPU until the slot was active taken off) (µs)", "", f => f.Restarted?.CpuMicrosPerEventAfterStart, "0.00", recv: false);
        Row("  process start to burst confirmed (s)", "", f => f.Restarted?.Seconds, "0.00");
        Row("  peak RSS (MB)", "", f => Mb(f.Restarted?.PeakRssBytes), "0.0");
        Row($"burst of {s.Burst:N0} after a pause (SIGSTOP while written, warm process): CPU per event (µs)", "≤ 8", f => f.Paused?.CpuMicrosPerEvent, "0.00", x => x <= 8);
        Row("  continue to burst confirmed (s)", "", f => f.Paused?.Seconds, "0.00");
        Row("  peak RSS during the burst (MB)", "", f => Mb(f.Paused?.PeakRssBytes), "0.0");
        Row($"brokers down while {s.BackpressureEvents:N0} events accrue: peak RSS (MB)", "≤ 100", f => Mb(f.Backpressure?.PeakWhileDownBytes), "0.0", x => x <= 100, recv: false);
        Row("  peak RSS including the drain once the brokers are back (MB)", "", f => Mb(f.Backpressure?.PeakBytes), "0.0", recv: false);
        Row($"idle RSS, streaming, nothing to relay (MB)", "≤ 50", f => Mb(f.IdleRssBytes), "0.0", x => x <= 50);
        Row("  of which anonymous (heaps, stacks) (MB)", "", f => Mb(f.IdleAnonymousBytes), "0.0");
        Row("  threads", "", f => f.IdleThreads, "0");
        Row($"idle CPU over {s.IdleSeconds} s (cores)", "≤ 0.01", f => f.IdleCores, "0.0000", x => x <= 0.01);
        Row($"start to streaming, slot and publication exist: process start → slot active, median of {s.Starts} (ms)", "≤ 300", f => f.StartMedianMs, "0", x => x <= 300);
        Row("  CPU until the slot is active, median (ms)", "", f => f.StartCpuMedianSeconds * 1000, "0", recv: false);
        Row($"CPU per event at a steady {s.Rate:N0} events/s, {s.RateRowsPerTransaction} rows/tx (µs)", "≤ 30", f => f.RateCpuMicrosPerEvent, "0.0", x => x <= 30);
        {
            var cells = new List<string> { $"  latency commit → Kafka ack at {s.Rate:N0}/s, p50 / p99 (ms)", "" };
            cells.AddRange(names.Select(n => Of(n) is { RateP50Ms: { } p50, RateP99Ms: { } p99 } ? $"{p50.ToString("0.0", Inv)} / {p99.ToString("0.0", Inv)}" : "—"));
            cells.Add("—");
            cells.AddRange(ratios.Select(_ => ""));
            cells.AddRange(["", ""]);
            sb.AppendRow([.. cells]);
        }
        sb.AppendLine();
        if (Of(shipped)?.Drains is { Count: > 0 } sd)
            sb.AppendLine($"- steady drain load (1m) {string.Join("; ", sd.Select(d => d.Load?.Replace(" → ", "→")))}");
        if (Of(shipped)?.RateAchieved is { } achieved)
            sb.AppendLine($"- fixed rate achieved {achieved:N0}/s, load {r.RateLoad}");
        sb.AppendLine($"- pg_recvlogical: `-o proto_version=1 -o binary=true -f /dev/null` on a slot of its own; its drain CPU is its whole run " +
                      "(start to exit at --endpos); in the paused burst it is timed until its walsender sent the end.");
        foreach (var n in r.Notes)
            sb.AppendLine($"- {n}");
        sb.AppendLine($"- load average at start {m.GetValueOrDefault("load_start")}, at end {m.GetValueOrDefault("load_end")}; the run took {m.GetValueOrDefault("total_seconds")} s");
        return sb.ToString();
    }

    static double? Mb(long? bytes) => bytes / 1048576.0;

    static string Num(double? v, string format) => v is { } x && double.IsFinite(x) ? x.ToString(format, Inv) : "—";

    static string Ratio(double? a, double? b) => a is { } x && b is { } y && y != 0 && double.IsFinite(x / y) ? (x / y).ToString("0.00", Inv) : "—";
}
