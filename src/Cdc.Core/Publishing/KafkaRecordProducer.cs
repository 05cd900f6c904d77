using System.Text.Json;
using Cdc.Configuration;
using Cdc.Contracts.SchemaRegistry;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace Cdc.Publishing;

/// <summary>
/// One idempotent Confluent.Kafka producer behind <see cref="IRecordProducer"/>. Delivery reports carry only the status
/// (no copies of key, value and headers). A new one is built for every relay session: after a failure, records of the
/// old one are not trusted for ordering.
/// </summary>
public sealed class KafkaRecordProducer : IRecordProducer
{
    readonly IProducer<byte[], byte[]> _producer;
    readonly IDeliveryReports _reports;
    readonly ILogger _logger;
    bool _purgeUnavailableLogged;

    /// <param name="transactionalId">Set for exactly-once delivery: the producer is then transactional.</param>
    public KafkaRecordProducer(KafkaOptions options, ILogger logger, IDeliveryReports reports, Action<long>? onQueueDepth = null,
        string? transactionalId = null)
    {
        _reports = reports;
        _logger = logger;
        var config = ProducerConfig(options);
        if (transactionalId is not null)
        {
            config.TransactionalId = transactionalId;
            // A permanent error aborts the whole Kafka transaction anyway.
            config.Set("enable.gapless.guarantee", "false");
        }
        _producer = new ProducerBuilder<byte[], byte[]>(config)
            .SetErrorHandler((_, error) => reports.ProducerError(error))
            .SetStatisticsHandler((_, json) => onQueueDepth?.Invoke(QueueDepth(json)))
            .SetLogHandler((_, message) => Log(logger, message))
            .Build();
        Admin = new DependentAdminClientBuilder(_producer.Handle).Build();
    }

    /// <summary>
    /// An admin client on the producer's connections, one for the producer's life: disposing one waits for its polling
    /// loop (up to 100 ms), which made every metadata question (the start's among them) take that long.
    /// </summary>
    public IAdminClient Admin { get; }

    /// <summary>The connector's producer settings, then the user's <c>Cdc:Kafka:Producer:*</c> overrides as is.</summary>
    public static ProducerConfig ProducerConfig(KafkaOptions options)
    {
        var config = new ProducerConfig
        {
            BootstrapServers = options.BootstrapServers,
            EnableIdempotence = true,
            Acks = Acks.All,
            // Agrees with the Java client, so a key lands on the same partition whichever client wrote it.
            Partitioner = Partitioner.Murmur2Random,
            LingerMs = 5,
            ClientId = "cdc-outbox",
            // For the queue-depth gauge; cheap at this interval.
            StatisticsIntervalMs = 5000,
            // The delivery handler needs only the error; copying key, value and headers back per report costs CPU.
            DeliveryReportFields = "status",
            // librdkafka connects to one broker at a time, at most every reconnect.backoff.ms / 2 (100 ms by default): the
            // brokers the bootstrap metadata names were reached 50 ms apart, which was a fifth of the start. A broker that
            // stays down is still retried with the backoff doubling up to reconnect.backoff.max.ms (10 s).
            ReconnectBackoffMs = 20,
        };
        // A batch Kafka refuses for good (too large, invalid) makes the producer fatal instead of letting librdkafka bump
        // the epoch and send the batches behind it at once: those would reach Kafka before the refused records are sent
        // again (alone), breaking per-aggregate order. The session then ends and resumes from the slot; the publisher
        // remembers what was refused. (Time-outs are not covered by it; they end the session and purge at once.)
        config.Set("enable.gapless.guarantee", "true");
        foreach (var (key, value) in options.Producer)
            config.Set(key, value);
        return config;
    }

    public void Produce(PendingEvent pending)
    {
        var record = pending.Record;
        var message = new Message<byte[], byte[]> { Key = record.Key, Value = Value(pending), Headers = record.Headers };
        pending.Callback ??= report => _reports.Delivered(pending, report.Error);
        if (record.Partition is { } partition)
            _producer.Produce(new TopicPartition(record.Topic, partition), message, pending.Callback);
        else
            _producer.Produce(record.Topic, message, pending.Callback);
    }

    /// <summary>
    /// The value as Kafka gets it: framed in the Schema Registry's wire format when the topic has a schema id. A dead
    /// letter's smallest form has no value, and stays without one.
    /// </summary>
    public static byte[] Value(PendingEvent pending)
    {
        var value = pending.Record.Value;
        return pending.ValuePrefix is { } prefix && value.Length > 0 ? OutboxEventFraming.Frame(prefix, value) : value;
    }

    public void Purge()
    {
        if (!LibRdKafkaPurge.TryPurge(_producer.Handle) && !_purgeUnavailableLogged)
        {
            _purgeUnavailableLogged = true;
            _logger.LogWarning("Could not purge the producer (librdkafka's rd_kafka_purge is not reachable on this platform); " +
                               "records queued behind a failed one may still be sent before it is sent again");
        }
    }

    /// <summary>Produces a record of the connector's own without waiting (inside a Kafka transaction: it commits with it).</summary>
    public void ProduceOwn(string topic, byte[] key, byte[] value, Action<Error> onDelivery) =>
        _producer.Produce(topic, new Message<byte[], byte[]> { Key = key, Value = value }, report => onDelivery(report.Error));

    // Exactly-once delivery. Blocking calls of Confluent.Kafka; the caller runs them off the delivery thread.
    public void InitTransactions(TimeSpan timeout) => _producer.InitTransactions(timeout);
    public void BeginTransaction() => _producer.BeginTransaction();
    public void CommitTransaction(TimeSpan timeout) => _producer.CommitTransaction(timeout);
    public void AbortTransaction(TimeSpan timeout) => _producer.AbortTransaction(timeout);

    /// <summary>Waits until every produced record has been reported, or the timeout passes. Returns what is left.</summary>
    public int Flush(TimeSpan timeout) => _producer.Flush(timeout);

    /// <summary>Asks the cluster for its brokers; throws when none answers within the timeout.</summary>
    public int CountBrokers(TimeSpan timeout) => Admin.GetMetadata(timeout).Brokers.Count;

    public void Dispose()
    {
        Admin.Dispose(); // first: it polls through the producer's handle
        _producer.Dispose();
    }

    /// <summary>msg_cnt of librdkafka's statistics: messages in the producer's queues.</summary>
    static long QueueDepth(string statistics)
    {
        using var doc = JsonDocument.Parse(statistics);
        return doc.RootElement.TryGetProperty("msg_cnt", out var count) ? count.GetInt64() : 0;
    }

    static void Log(ILogger logger, LogMessage message)
    {
        // librdkafka logs every failed connection attempt; the relay logs state changes instead, so these stay at Debug.
        var level = message.Level switch
        {
            SyslogLevel.Emergency or SyslogLevel.Alert or SyslogLevel.Critical => LogLevel.Warning,
            SyslogLevel.Debug => LogLevel.Trace,
            _ => LogLevel.Debug,
        };
        logger.Log(level, "librdkafka {Facility}: {Message}", message.Facility, message.Message);
    }
}
