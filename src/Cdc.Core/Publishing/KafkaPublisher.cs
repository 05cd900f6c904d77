using System.Text.Json;
using Cdc.Configuration;
using Cdc.Mapping;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace Cdc.Publishing;

/// <summary>
/// Produces records with one idempotent producer and reports each delivery through a callback (no task per event).
/// The producer is rebuilt by creating a new publisher: after a failed delivery, later records of the old one are not
/// trusted for ordering.
/// </summary>
public sealed class KafkaPublisher : IDisposable
{
    readonly IProducer<byte[], byte[]> _producer;

    public KafkaPublisher(KafkaOptions options, ILogger logger, Action<Error> onProducerError, Action<long> onQueueDepth)
    {
        _producer = new ProducerBuilder<byte[], byte[]>(ProducerConfig(options))
            .SetErrorHandler((_, error) => onProducerError(error))
            .SetStatisticsHandler((_, json) => onQueueDepth(QueueDepth(json)))
            .SetLogHandler((_, message) => Log(logger, message))
            .Build();
    }

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
        };
        foreach (var (key, value) in options.Producer)
            config.Set(key, value);
        return config;
    }

    /// <summary>
    /// Produces a record; <paramref name="onDelivery"/> runs on the producer's delivery thread with the error
    /// (NoError when acknowledged). Throws <see cref="ProduceException{TKey,TValue}"/> when librdkafka refuses at once.
    /// </summary>
    public void Produce(OutboxRecord record, Action<Error> onDelivery)
    {
        var message = new Message<byte[], byte[]> { Key = record.Key, Value = record.Value, Headers = record.Headers };
        _producer.Produce(record.Topic, message, report => onDelivery(report.Error));
    }

    /// <summary>Waits until every produced record has been reported, or the timeout passes. Returns what is left.</summary>
    public int Flush(TimeSpan timeout) => _producer.Flush(timeout);

    /// <summary>Asks the cluster for its brokers; throws when none answers within the timeout.</summary>
    public int CountBrokers(TimeSpan timeout)
    {
        using var admin = new DependentAdminClientBuilder(_producer.Handle).Build();
        return admin.GetMetadata(timeout).Brokers.Count;
    }

    public void Dispose() => _producer.Dispose();

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
