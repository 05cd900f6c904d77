using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Cdc.Benchmarks;

/// <summary>The printed table (Markdown, so it pastes into the README) and the same data as JSON.</summary>
static class Report
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Table(SuiteResult r)
    {
        var sb = new StringBuilder();
        var m = r.Machine;
        sb.AppendLine($"Machine: {m["nproc"]} cores ({m["cpu"]}), {m["memory_gib"]} GiB; {m["os"]}; {m["dotnet"]}; commit {m["commit"]}; worker build {m["worker_build"]}");
        if (m.TryGetValue("postgres", out var pg))
            sb.AppendLine($"PostgreSQL: {pg?.ToString()?.Split(" on ")[0]} ({m.GetValueOrDefault("postgres_settings")}); Kafka: {m.GetValueOrDefault("kafka")}");
        if (r.Backlog.Count > 0)
            sb.AppendLine($"Backlog: {r.Backlog["events"]:N0} events after {r.Backlog["warmup_events"]:N0} warm-up, {r.Backlog["rows_per_transaction"]} rows/tx, " +
                          $"payload {r.Backlog["payload_bytes_avg"]} B jsonb + headers {r.Backlog["headers_bytes_avg"]} B (row {r.Backlog["row_bytes_avg"]} B), " +
                          $"WAL {Convert.ToDouble(r.Backlog["wal_bytes"], Inv) / 1048576:0} MiB; written at {r.Backlog["write_rate"]:N0} rows/s");
        sb.AppendLine();

        if (r.Drains.Count > 0)
        {
            sb.AppendLine("1. Backlog drain (same events; CPU of the relay's own process; server = all PostgreSQL processes)");
            sb.AppendLine();
            sb.AppendRow("", "relay", "events", "s", "events/s", "CPU s / 1M events", "peak RSS MB", "server CPU s / 1M", "load 1m start→end");
            sb.AppendRow("---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---");
            foreach (var d in r.Drains)
            {
                if (d.Error is not null)
                {
                    sb.AppendRow(d.Name, d.Relay, "—", "—", "failed", "—", "—", "—", Load(d.LoadStart, d.LoadEnd));
                    continue;
                }
                sb.AppendRow(d.Name, d.Relay, d.Events.ToString("N0", Inv), d.Seconds.ToString("0.0", Inv), d.EventsPerSecond.ToString("N0", Inv),
                    Num(d.CpuSecondsPerMillion, "0.0"), d.PeakRssBytes is { } rss ? (rss / 1048576.0).ToString("0", Inv) : "—",
                    Num(d.ServerCpuSecondsPerMillion, "0.0"), Load(d.LoadStart, d.LoadEnd));
            }
            sb.AppendLine();
            foreach (var d in r.Drains)
                sb.AppendLine($"- {d.Name}: {d.Error ?? d.Note}");
            if (r.Ratios.Count > 0)
                sb.AppendLine("- ratios (events/s): " + string.Join(", ", r.Ratios.Select(kv => $"{kv.Key} = {Num(kv.Value, "0.00")}")));
            sb.AppendLine();
        }

        if (r.Latency.Count > 0)
        {
            sb.AppendLine("2. Latency, PostgreSQL commit → Kafka acknowledgement (the worker's cdc_event_latency_seconds, differenced per phase; percentiles interpolated in its buckets 5, 10, 25, 50, 100, 250 ms, …)");
            sb.AppendLine();
            sb.AppendRow("target events/s", "achieved", "events", "p50 ms", "p99 ms", "max ≤ ms", "mean ms", "worker CPU µs/event", "load 1m start→end");
            sb.AppendRow("---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---");
            foreach (var l in r.Latency)
                sb.AppendRow(l.TargetRate.ToString("N0", Inv), l.AchievedRate.ToString("N0", Inv) + (l.CaughtUp ? "" : " (behind)"), l.Events.ToString("N0", Inv),
                    Num(l.P50Ms, "0.0"), Num(l.P99Ms, "0.0"), Num(l.MaxBoundMs, "0"), Num(l.MeanMs, "0.0"), Num(l.WorkerCpuMicrosPerEvent, "0.0"), Load(l.LoadStart, l.LoadEnd));
            sb.AppendLine();
            sb.AppendLine($"- worker CPU while streaming with nothing to relay: {Num(r.WorkerIdleCores, "0.000")} cores (a floor under the per-event CPU at low rates)");
            sb.AppendLine($"- highest rate with p99 < 100 ms: {(r.HighestRateWithP99Under100Ms is { } h ? h.ToString("N0", Inv) + " events/s" : "none")}");
            sb.AppendLine();
        }

        if (r.Backpressure is { } b)
        {
            sb.AppendLine("3. Memory under backpressure (all brokers down while events accrue, then up)");
            sb.AppendLine();
            sb.AppendRow("events while down", "bound (events / bytes)", "in flight seen (events / MiB)", "RSS before MB", "peak RSS while down MB", "peak RSS MB", "drain after up s", "load 1m start→end");
            sb.AppendRow("---:", "---:", "---:", "---:", "---:", "---:", "---:", "---");
            sb.AppendRow(b.Events.ToString("N0", Inv), $"{b.MaxInFlightEvents:N0} / {b.MaxInFlightBytes / 1048576} MiB",
                $"{b.MaxInFlightEventsSeen:N0} / {b.MaxInFlightBytesSeen / 1048576:0.0}", (b.RssAtStartBytes / 1048576.0).ToString("0", Inv),
                (b.PeakRssWhileDownBytes / 1048576.0).ToString("0", Inv), (b.PeakRssBytes / 1048576.0).ToString("0", Inv),
                b.Drained ? Num(b.DrainSeconds, "0.0") : "NOT drained", Load(b.LoadStart, b.LoadEnd));
            sb.AppendLine();
            sb.AppendLine($"- message.timeout.ms = {b.MessageTimeoutMs}; brokers down {b.DownSeconds} s (writing took {b.WriteSeconds} s)");
            sb.AppendLine();
        }

        if (r.Targets.Count > 0)
        {
            sb.AppendLine("Targets (issue \"Performance: a benchmark suite\"):");
            foreach (var t in r.Targets)
                sb.AppendLine($"- {t}");
        }
        foreach (var n in r.Notes)
            sb.AppendLine($"Note: {n}");
        sb.AppendLine($"Load average at start {m.GetValueOrDefault("load_start")}, at end {Proc.LoadAverage()}; run took {m.GetValueOrDefault("total_seconds")} s");
        return sb.ToString();
    }

    static string Load(string? start, string? end) =>
        $"{start?.Split(' ')[0] ?? "?"} → {end?.Split(' ')[0] ?? "?"}";

    static string Num(double? v, string format) => v is { } x && double.IsFinite(x) ? x.ToString(format, Inv) : "—";

    public static string Json(SuiteResult r) => JsonSerializer.Serialize(r, new JsonSerializerOptions
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    });
}
