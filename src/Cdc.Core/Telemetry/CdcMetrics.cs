using System.Diagnostics.Metrics;
using Cdc.Relay;

namespace Cdc.Telemetry;

/// <summary>The connector's instruments (meter <c>Cdc</c>); exported by OpenTelemetry to Prometheus and OTLP.</summary>
public sealed class CdcMetrics : IDisposable
{
    public const string MeterName = "Cdc";

    readonly Meter _meter;
    readonly Counter<long> _published;
    readonly Counter<long> _deadLettered;
    readonly Counter<long> _deliveryFailures;
    readonly Counter<long> _restarts;
    readonly Histogram<double> _latency;

    public CdcMetrics(RelayStatus status, IMeterFactory? meterFactory = null)
    {
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        _published = _meter.CreateCounter<long>("cdc.events.published", "{event}",
            "Events Kafka acknowledged on their topic.");
        _deadLettered = _meter.CreateCounter<long>("cdc.events.dead_lettered", "{event}",
            "Rows that could not be published as specified and went to the dead-letter topic.");
        _deliveryFailures = _meter.CreateCounter<long>("cdc.deliveries.failed", "{event}",
            "Deliveries Kafka reported as failed; the stream restarts from the slot after each.");
        _restarts = _meter.CreateCounter<long>("cdc.stream.restarts", "{restart}",
            "Times the replication stream and producer were rebuilt, by cause.");
        _latency = _meter.CreateHistogram<double>("cdc.event.latency", "s",
            "Time from the PostgreSQL commit to the Kafka acknowledgement.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
        _meter.CreateObservableGauge("cdc.events.in_flight", () => status.InFlightEvents, "{event}",
            "Events produced and not yet acknowledged.");
        _meter.CreateObservableGauge("cdc.bytes.in_flight", () => status.InFlightBytes, "By",
            "Record bytes produced and not yet acknowledged.");
        _meter.CreateObservableGauge("cdc.replication.lag", () => status.LagBytes, "By",
            "The server's WAL position minus the slot position this connector confirmed.");
        _meter.CreateObservableGauge("cdc.stream.up", () => status.Streaming ? 1 : 0, "1",
            "1 while the replication stream is open.");
    }

    public void Published(double latencySeconds)
    {
        _published.Add(1);
        _latency.Record(latencySeconds);
    }

    public void DeadLettered(string reason) => _deadLettered.Add(1, new KeyValuePair<string, object?>("reason", reason));
    public void DeliveryFailed() => _deliveryFailures.Add(1);
    public void Restarted(string cause) => _restarts.Add(1, new KeyValuePair<string, object?>("cause", cause));

    public void Dispose() => _meter.Dispose();
}
