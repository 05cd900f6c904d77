using Cdc.Configuration;
using Confluent.Kafka;

namespace Cdc.Publishing;

/// <summary>
/// Asks the cluster for its brokers (a metadata request). Deliveries say whether Kafka answers while events flow; an idle
/// leader and a standby have none, so they ask this way, or they would stay "unreachable" after an outage for good.
/// </summary>
public static class KafkaProbe
{
    /// <summary>A client of its own with the producer's connection and security settings, for a replica with no producer.</summary>
    public static IAdminClient Client(KafkaOptions options)
    {
        var config = new AdminClientConfig { BootstrapServers = options.BootstrapServers, ClientId = "cdc-outbox-probe" };
        foreach (var (key, value) in options.Producer)
            if (!ProducerOnly.Contains(key))
                config.Set(key, value);
        return new AdminClientBuilder(config).SetLogHandler((_, _) => { }).Build();
    }

    /// <summary>Through <paramref name="admin"/>; false when no broker answers within the timeout.</summary>
    public static bool Answers(IAdminClient admin, TimeSpan timeout)
    {
        try
        {
            return admin.GetMetadata(timeout).Brokers.Count > 0;
        }
        catch (KafkaException)
        {
            return false;
        }
    }

    // Producer settings an admin client would warn about; the rest (addresses, security, timeouts) apply to both.
    static readonly HashSet<string> ProducerOnly = new(StringComparer.Ordinal)
    {
        "acks", "request.required.acks", "linger.ms", "queue.buffering.max.ms", "batch.size", "batch.num.messages",
        "compression.type", "compression.codec", "enable.idempotence", "enable.gapless.guarantee", "message.timeout.ms",
        "delivery.timeout.ms", "max.in.flight.requests.per.connection", "max.in.flight", "queue.buffering.max.messages",
        "queue.buffering.max.kbytes", "retries", "message.send.max.retries", "retry.backoff.ms", "partitioner",
        "transactional.id", "transaction.timeout.ms", "allow.auto.create.topics", "delivery.report.only.error",
        "queue.buffering.backpressure.threshold", "sticky.partitioning.linger.ms", "message.max.bytes",
    };
}
