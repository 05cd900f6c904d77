namespace Cdc.Benchmarks;

/// <summary>One measured drain (a backlog of the same events, drained by one relay). Nulls: not measured.</summary>
sealed class DrainResult
{
    public required string Name { get; init; }
    public required string Relay { get; init; }
    public double Events { get; set; }
    public double Seconds { get; set; }
    public double EventsPerSecond => Seconds > 0 ? Events / Seconds : 0;
    public double? ProcessCpuSeconds { get; set; }
    public double? CpuSecondsPerMillion => ProcessCpuSeconds is { } cpu && Events > 0 ? cpu / Events * 1e6 : null;
    public double? ServerCpuSeconds { get; set; }
    public double? ServerCpuSecondsPerMillion => ServerCpuSeconds is { } cpu && Events > 0 ? cpu / Events * 1e6 : null;
    public long? PeakRssBytes { get; set; }
    public string? Note { get; set; }
    /// <summary>Figures particular to one relay (e.g. the polling mode's VACUUM afterwards).</summary>
    public Dictionary<string, double> Extra { get; set; } = [];
    public string? Error { get; set; }
    public string? LoadStart { get; set; }
    public string? LoadEnd { get; set; }
}

sealed class LatencyResult
{
    public double TargetRate { get; set; }
    public double AchievedRate { get; set; }
    public double Seconds { get; set; }
    public double Events { get; set; }
    public double? P50Ms { get; set; }
    public double? P99Ms { get; set; }
    public double? MaxBoundMs { get; set; }
    public double? MeanMs { get; set; }
    public double? WorkerCpuMicrosPerEvent { get; set; }
    public bool CaughtUp { get; set; }
    public string? LoadStart { get; set; }
    public string? LoadEnd { get; set; }
}

sealed class BackpressureResult
{
    public long Events { get; set; }
    public int MaxInFlightEvents { get; set; }
    public long MaxInFlightBytes { get; set; }
    public string MessageTimeoutMs { get; set; } = "";
    public double MaxInFlightEventsSeen { get; set; }
    public double MaxInFlightBytesSeen { get; set; }
    public long PeakRssWhileDownBytes { get; set; }
    public long PeakRssBytes { get; set; }
    public long RssAtStartBytes { get; set; }
    public double WriteSeconds { get; set; }
    public double DownSeconds { get; set; }
    public double? DrainSeconds { get; set; }
    public bool Drained { get; set; }
    public string? LoadStart { get; set; }
    public string? LoadEnd { get; set; }
}

sealed class SuiteResult
{
    public Dictionary<string, object?> Machine { get; set; } = [];
    public Dictionary<string, object> Settings { get; set; } = [];
    public Dictionary<string, object?> Backlog { get; set; } = [];
    public List<DrainResult> Drains { get; set; } = [];
    public Dictionary<string, double?> Ratios { get; set; } = [];
    public List<LatencyResult> Latency { get; set; } = [];
    public double? HighestRateWithP99Under100Ms { get; set; }
    /// <summary>The latency worker's CPU while streaming with nothing to relay (cores = CPU seconds per second).</summary>
    public double? WorkerIdleCores { get; set; }
    public BackpressureResult? Backpressure { get; set; }
    public List<string> Targets { get; set; } = [];
    public List<string> Notes { get; set; } = [];
}
