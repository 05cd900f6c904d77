using Confluent.Kafka;

namespace Cdc.Publishing;

/// <summary>Where a producer reports: once per record handed to it, and for errors of the producer itself.</summary>
public interface IDeliveryReports
{
    /// <summary>Kafka's answer for one record (NoError when acknowledged). Runs on the producer's delivery thread.</summary>
    void Delivered(PendingEvent pending, Error error);

    /// <summary>An error of the producer rather than of a record (brokers down, a fatal state, a handler that threw).</summary>
    void ProducerError(Error error);
}

/// <summary>The producer as the publisher uses it: hand records over, hear back once per record, take everything back.</summary>
public interface IRecordProducer : IDisposable
{
    /// <summary>
    /// Hands the event's current record to the producer; the answer comes through <see cref="IDeliveryReports.Delivered"/>.
    /// Throws <see cref="ProduceException{TKey,TValue}"/> when the producer refuses at once (the record then was not taken).
    /// </summary>
    void Produce(PendingEvent pending);

    /// <summary>
    /// Takes back every record not yet acknowledged, queued or in flight, without waiting: each is reported as purged,
    /// and nothing of them is sent any more. Used as soon as a record fails, so that nothing produced after it can
    /// reach Kafka before it is sent again.
    /// </summary>
    void Purge();
}
