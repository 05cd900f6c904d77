using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Cdc.Relay;

namespace Cdc.Telemetry;

/// <summary>
/// The connector's instruments (meter <c>Cdc</c>), exported by OpenTelemetry to Prometheus and OTLP. Kafka sends
/// follow the OpenTelemetry messaging conventions; the rest are the connector's own under <c>cdc.*</c>.
/// </summary>
public sealed class CdcMetrics : IDisposable
{
    public const string MeterName = "Cdc";

    /// <summary>Topics become a tag; past this many distinct topics they are counted as "_other" (bounded cardinality).</summary>
    const int MaxTopicTags = 200;

    static readonly string[] SlotStatuses = ["reserved", "extended", "unreserved", "lost"];

    /// <summary>The values of the <c>reason</c> tag of <c>cdc.events.dead_lettered</c>.</summary>
    public static readonly string[] DeadLetterReasons = ["unroutable", "headers", "payload", "unreadable", "too_large", "rejected"];

    /// <summary>The values of the <c>cause</c> tag of <c>cdc.stream.restarts</c>.</summary>
    public static readonly string[] RestartCauses = ["postgres", "kafka", "kafka_delivery", "other"];

    /// <summary>The values of the <c>origin</c> tag of <c>cdc.snapshot.rows</c>: how rows read from the table came to be read.</summary>
    public static readonly string[] TableOrigins = ["snapshot", "backfill", "republish", "polling"];

    readonly Meter _meter;
    readonly Counter<long> _published;
    readonly Counter<long> _sent;
    readonly Counter<long> _deadLettered;
    readonly Counter<long> _deliveryFailures;
    readonly Counter<long> _restarts;
    readonly Counter<long> _slotRecreations;
    readonly Counter<long> _retentionDeleted;
    readonly Counter<long> _streamStarts;
    readonly Counter<long> _tableRows;
    readonly Counter<long> _kafkaTransactions;
    readonly Histogram<double> _latency;
    readonly Histogram<double> _sendDuration;
    readonly ConcurrentDictionary<string, KeyValuePair<string, object?>[]> _topicTags = new(StringComparer.Ordinal);

    public CdcMetrics(RelayStatus status, IMeterFactory? meterFactory = null)
    {
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);

        _sent = _meter.CreateCounter<long>("messaging.client.sent.messages", "{message}",
            "Messages the producer sent and Kafka acknowledged (OpenTelemetry messaging conventions).");
        _sendDuration = _meter.CreateHistogram<double>("messaging.client.operation.duration", "s",
            "Kafka produce latency: from handing the record to the producer to its acknowledgement.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10] });

        _published = _meter.CreateCounter<long>("cdc.events.published", "{event}",
            "Outbox events Kafka acknowledged on their topic.");
        _deadLettered = _meter.CreateCounter<long>("cdc.events.dead_lettered", "{event}",
            "Rows that could not be published as specified and went to the dead-letter topic, by reason.");
        _deliveryFailures = _meter.CreateCounter<long>("cdc.deliveries.failed", "{event}",
            "Deliveries Kafka reported as failed; the stream restarts from the slot after each.");
        _restarts = _meter.CreateCounter<long>("cdc.stream.restarts", "{restart}",
            "Times the replication stream and producer were rebuilt after a failure, by cause.");
        _slotRecreations = _meter.CreateCounter<long>("cdc.slot.recreations", "{recreation}",
            "Times the slot was found invalidated (wal_status lost) and recreated; each leaves a logged gap to backfill.");
        _retentionDeleted = _meter.CreateCounter<long>("cdc.retention.deleted", "{row}",
            "Outbox rows the optional retention job deleted (older than Cdc:Postgres:Retention and already confirmed).");
        _streamStarts = _meter.CreateCounter<long>("cdc.stream.starts", "{start}",
            "Times this replica took the slot and started streaming (the first start, after a restart, or taking over from another replica).");
        _tableRows = _meter.CreateCounter<long>("cdc.snapshot.rows", "{row}",
            "Rows read from the outbox table instead of the slot and handed to the producer, by origin (snapshot, backfill, republish, polling).");
        _kafkaTransactions = _meter.CreateCounter<long>("cdc.kafka.transactions", "{transaction}",
            "Kafka transactions committed (Cdc:Kafka:Delivery=ExactlyOnce): one per source transaction or run of small ones.");
        _latency = _meter.CreateHistogram<double>("cdc.event.latency", "s",
            "End-to-end latency: from the PostgreSQL commit to the Kafka acknowledgement.",
            advice: new InstrumentAdvice<double>
            {
                // Fine below 25 ms, where the latency targets are, so percentiles there are not guesses between wide buckets.
                HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
            });

        // Counters start at 0 for every known tag value, so dashboards and alerts see them before the first event.
        foreach (var reason in DeadLetterReasons)
            _deadLettered.Add(0, new KeyValuePair<string, object?>("reason", reason));
        foreach (var cause in RestartCauses)
            _restarts.Add(0, new KeyValuePair<string, object?>("cause", cause));
        foreach (var origin in TableOrigins)
            _tableRows.Add(0, new KeyValuePair<string, object?>("origin", origin));
        _deliveryFailures.Add(0);
        _slotRecreations.Add(0);
        _streamStarts.Add(0);
        _kafkaTransactions.Add(0);

        _meter.CreateObservableGauge("cdc.events.in_flight", () => status.InFlightEvents, "{event}",
            "Events produced and not yet acknowledged.");
        _meter.CreateObservableGauge("cdc.bytes.in_flight", () => status.InFlightBytes, "By",
            "Record bytes produced and not yet acknowledged.");
        _meter.CreateObservableGauge("cdc.producer.queue.depth", () => status.ProducerQueueDepth, "{message}",
            "Messages waiting in the producer's queue (librdkafka statistics).");
        _meter.CreateObservableGauge("cdc.replication.lag", () => status.LagBytes, "By",
            "The server's WAL position minus the slot position this connector confirmed.");
        _meter.CreateObservableGauge("cdc.replication.delay", () => status.DelaySeconds, "s",
            "Seconds since the commit of the oldest transaction read but not yet confirmed (0 when caught up).");
        _meter.CreateObservableGauge("cdc.stream.up", () => status.Streaming ? 1 : 0, "{stream}",
            "1 on the replica that holds the slot and streams it, 0 otherwise (standbys, reconnecting).");
        _meter.CreateObservableGauge("cdc.stream.standby", () => status.Standby ? 1 : 0, "{stream}",
            "1 while this replica waits for a slot another replica reads.");
        _meter.CreateObservableGauge("cdc.delivery.blocked", () => status.DeliveryBlocked ? 1 : 0, "{state}",
            "1 while events wait for a topic that does not exist and could not be created; the slot is not confirmed past them.");
        _meter.CreateObservableGauge("cdc.slot.wal.retained", () => Slot(status, s => s.RetainedWalBytes), "By",
            "WAL the server retains for the slot (current WAL position minus the slot's restart_lsn).");
        _meter.CreateObservableGauge("cdc.slot.wal.safe_size", () => Slot(status, s => s.SafeWalSizeBytes), "By",
            "WAL that can still be written before the slot is in danger of invalidation (safe_wal_size; absent when unlimited).");
        _meter.CreateObservableGauge("cdc.slot.wal_status", () => SlotStatus(status), "{status}",
            "1 for the slot's current wal_status (reserved, extended, unreserved, lost), 0 for the others.");
    }

    /// <summary>Kafka acknowledged an event: counts it and records both latencies.</summary>
    public void Published(string topic, double commitToAckSeconds, double sendSeconds)
    {
        var tags = TopicTags(topic);
        _published.Add(1, tags.AsSpan(1));
        _sent.Add(1, tags);
        _sendDuration.Record(sendSeconds, tags);
        _latency.Record(commitToAckSeconds);
    }

    public void DeadLettered(string reason) => _deadLettered.Add(1, new KeyValuePair<string, object?>("reason", reason));
    public void DeliveryFailed(string topic) => _deliveryFailures.Add(1, TopicTags(topic).AsSpan(1));
    public void SlotRecreated() => _slotRecreations.Add(1);
    public void RetentionDeleted(long rows) => _retentionDeleted.Add(rows);
    public void StreamStarted() => _streamStarts.Add(1);
    public void KafkaTransactionCommitted() => _kafkaTransactions.Add(1);
    public void TableRowsRead(string origin, long rows) => _tableRows.Add(rows, new KeyValuePair<string, object?>("origin", origin));
    public void Restarted(string cause) => _restarts.Add(1, new KeyValuePair<string, object?>("cause", cause));

    /// <summary>[messaging.system, messaging.destination.name]; the cdc.* instruments use the topic alone.</summary>
    KeyValuePair<string, object?>[] TopicTags(string topic)
    {
        if (_topicTags.TryGetValue(topic, out var tags))
            return tags;
        var value = _topicTags.Count < MaxTopicTags ? topic : "_other";
        tags = [new("messaging.system", "kafka"), new("messaging.destination.name", value)];
        return value == topic ? _topicTags.GetOrAdd(topic, tags) : tags;
    }

    static IEnumerable<Measurement<long>> Slot(RelayStatus status, Func<SlotHealth, long?> read) =>
        status.Slot is { } slot && read(slot) is { } value ? [new Measurement<long>(value)] : [];

    static IEnumerable<Measurement<int>> SlotStatus(RelayStatus status) =>
        status.Slot is { } slot
            ? SlotStatuses.Select(s => new Measurement<int>(s == slot.WalStatus ? 1 : 0, new KeyValuePair<string, object?>("status", s)))
            : [];

    public void Dispose() => _meter.Dispose();
}
