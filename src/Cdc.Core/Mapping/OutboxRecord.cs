using Confluent.Kafka;

namespace Cdc.Mapping;

/// <summary>A Kafka record built from one outbox row, ready to produce.</summary>
public sealed record OutboxRecord(string Topic, byte[] Key, Headers Headers, byte[] Value)
{
    /// <summary>The row id, the dead-letter key should this record be rejected by Kafka.</summary>
    public required string EventId { get; init; }

    /// <summary>The partition a placed column chose (<c>column:partition</c>), or null for the key's.</summary>
    public int? Partition { get; init; }

    /// <summary>
    /// The event, when the value is not it (<c>ValueFormat=Payload</c>): its dead letters are OutboxEvents made from it.
    /// Null when the value is the serialized event.
    /// </summary>
    public Cdc.Outbox.V1.OutboxEvent? Event { get; init; }
}

/// <summary>
/// The result of mapping a row: a record to publish, or a dead letter with the reason in its <c>error</c> header and
/// <see cref="DeadLetterReason"/> as a short category for metrics (unroutable, headers, payload).
/// </summary>
public readonly record struct MappingResult(OutboxRecord? Record, OutboxRecord? DeadLetter, string? DeadLetterReason = null)
{
    public bool IsDeadLetter => DeadLetter is not null;
}
