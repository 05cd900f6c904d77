using System.Globalization;

namespace Cdc.Benchmarks;

/// <summary>The connector under test: the real worker binary (src/Cdc.Worker, same configuration as this build) as a child.</summary>
sealed class Worker : IDisposable
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };
    readonly Child _child;

    Worker(Child child, string url, Dictionary<string, string?> env)
    {
        _child = child;
        Url = url;
        Environment = env;
    }

    public int Pid => _child.Pid;
    public string Url { get; }
    public IReadOnlyDictionary<string, string?> Environment { get; }
    public bool HasExited => _child.HasExited;
    public string Tail(int lines) => _child.Tail(lines);

    /// <summary>The worker's environment: the contract's keys plus the given extras (e.g. Cdc__Relay__*).</summary>
    public static Dictionary<string, string?> EnvironmentFor(string connectionString, string bootstrap, string slot,
        IDictionary<string, string?>? extra = null, IDictionary<string, string?>? overrides = null)
    {
        var env = new Dictionary<string, string?>
        {
            ["Cdc__Postgres__ConnectionString"] = connectionString,
            ["Cdc__Postgres__Table"] = "public.outbox",
            ["Cdc__Postgres__Slot"] = slot,
            ["Cdc__Postgres__Publication"] = Database.Publication,
            ["Cdc__Kafka__BootstrapServers"] = bootstrap,
            ["Cdc__Relay__ConfirmInterval"] = "00:00:00.100",
            ["ASPNETCORE_URLS"] = "http://127.0.0.1:0",
        };
        foreach (var source in new[] { extra, overrides })
            if (source is not null)
                foreach (var (k, v) in source)
                    env[k] = v;
        return env;
    }

    /// <summary>Starts the worker and waits until it relays: its "Streaming slot" line (replication) or <paramref name="readyLine"/>.</summary>
    public static async Task<Worker> StartAsync(Dictionary<string, string?> env, bool echo, string readyLine = "Streaming slot")
    {
        var child = Child.Start("worker", "dotnet", [Cdc.Embedded.WorkerBinary.Path()], env, echo);
        try
        {
            const string marker = "Now listening on: ";
            var line = await child.WaitForLineAsync(marker, TimeSpan.FromSeconds(60), contains: true);
            var url = line[(line.IndexOf(marker, StringComparison.Ordinal) + marker.Length)..].Trim();
            await child.WaitForLineAsync(readyLine, TimeSpan.FromSeconds(60), contains: true);
            return new Worker(child, url, env);
        }
        catch
        {
            child.Kill();
            child.Dispose();
            throw;
        }
    }

    public double CpuSeconds() => Proc.CpuSeconds(Pid);
    public long PeakRssBytes() => Proc.PeakRssBytes(Pid);
    public long RssBytes() => Proc.RssBytes(Pid);

    public async Task<Metrics> ScrapeAsync() => Metrics.Parse(await Http.GetStringAsync(Url + "/metrics"));

    public Task<int> TerminateAsync() => _child.TerminateAsync(TimeSpan.FromSeconds(40));

    public void Dispose()
    {
        _child.Kill();
        _child.Dispose();
    }

}

/// <summary>The Prometheus text of the worker's /metrics: the latency histogram and a few gauges.</summary>
sealed class Metrics
{
    /// <summary>Cumulative bucket counts of cdc_event_latency_seconds by upper bound (+Inf as PositiveInfinity).</summary>
    public SortedDictionary<double, double> LatencyBuckets { get; } = [];
    public double LatencySum { get; private set; }
    public double LatencyCount { get; private set; }
    public double InFlightEvents { get; private set; }
    public double InFlightBytes { get; private set; }
    public double Published { get; private set; }

    public static Metrics Parse(string text)
    {
        var m = new Metrics();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] == '#')
                continue;
            // name{labels} value [timestamp]
            var close = line.LastIndexOf('}');
            var head = close >= 0 ? line[..(close + 1)] : line[..Math.Max(0, line.IndexOf(' '))];
            var rest = line[head.Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (head.Length == 0 || rest.Length == 0
                || !double.TryParse(rest[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
                continue;
            var name = head.Contains('{') ? head[..head.IndexOf('{')] : head;
            switch (name)
            {
                case "cdc_event_latency_seconds_bucket":
                    var le = Label(head, "le");
                    var bound = le == "+Inf" ? double.PositiveInfinity : double.Parse(le!, CultureInfo.InvariantCulture);
                    m.LatencyBuckets[bound] = m.LatencyBuckets.GetValueOrDefault(bound) + value;
                    break;
                case "cdc_event_latency_seconds_sum": m.LatencySum += value; break;
                case "cdc_event_latency_seconds_count": m.LatencyCount += value; break;
                case "cdc_events_in_flight": m.InFlightEvents += value; break;
                case "cdc_bytes_in_flight_bytes": m.InFlightBytes += value; break;
                case "cdc_events_published_total": m.Published += value; break;
            }
        }
        return m;
    }

    static string? Label(string head, string label)
    {
        var key = label + "=\"";
        var at = head.IndexOf(key, StringComparison.Ordinal);
        if (at < 0)
            return null;
        var start = at + key.Length;
        return head[start..head.IndexOf('"', start)];
    }
}

/// <summary>Percentiles from the difference of two cumulative histograms, interpolated linearly inside a bucket.</summary>
sealed record LatencySummary(double Count, double MeanMs, double P50Ms, double P99Ms, double MaxBoundMs)
{
    public static LatencySummary Between(Metrics before, Metrics after)
    {
        var bounds = after.LatencyBuckets.Keys.ToArray();
        var counts = bounds.Select(b => after.LatencyBuckets[b] - before.LatencyBuckets.GetValueOrDefault(b)).ToArray();
        var total = after.LatencyCount - before.LatencyCount;
        var mean = total > 0 ? (after.LatencySum - before.LatencySum) / total * 1000 : double.NaN;
        double Quantile(double q)
        {
            if (total <= 0)
                return double.NaN;
            var rank = q * total;
            var lower = 0.0;
            var below = 0.0;
            for (var i = 0; i < bounds.Length; i++)
            {
                if (counts[i] >= rank)
                {
                    if (double.IsPositiveInfinity(bounds[i]))
                        return lower * 1000; // beyond the last finite bound: all we know is "more than"
                    var inBucket = counts[i] - below;
                    var fraction = inBucket > 0 ? (rank - below) / inBucket : 1;
                    return (lower + (bounds[i] - lower) * fraction) * 1000;
                }
                lower = bounds[i];
                below = counts[i];
            }
            return lower * 1000;
        }
        // The highest bucket that received events bounds the maximum from above.
        var maxBound = double.NaN;
        for (var i = 0; i < bounds.Length; i++)
            if (counts[i] - (i > 0 ? counts[i - 1] : 0) > 0)
                maxBound = bounds[i] * 1000;
        return new LatencySummary(total, mean, Quantile(0.50), Quantile(0.99), maxBound);
    }
}
