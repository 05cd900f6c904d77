using System.Text.RegularExpressions;

namespace Cdc.Tests.Fixtures;

/// <summary>Reading a worker's metrics and writing a steady load, for the tests that run several workers.</summary>
public static class WorkerLoad
{
    /// <summary>The sample of a gauge in Prometheus text (<c>name{labels} value</c>).</summary>
    public static string Gauge(string metrics, string name) =>
        Regex.Match(metrics, $@"(?m)^{name}(?:\{{[^}}]*\}})? (\S+)") is { Success: true } m ? m.Groups[1].Value : $"{name} not exported";

    /// <summary>Commits one event every 20 ms until stopped (a steady writer); returns what it wrote.</summary>
    public static (Task Writing, List<TestEvent> Written, CancellationTokenSource Stop) SteadyWriter(OutboxHarness outbox)
    {
        var written = new List<TestEvent>();
        var stop = new CancellationTokenSource();
        var writing = Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                var e = new TestEvent("order", $"o-{i % 5}", $"E{i}");
                await outbox.CommitAsync(e);
                lock (written)
                    written.Add(e);
                await Task.Delay(20);
            }
        });
        return (writing, written, stop);
    }
}
