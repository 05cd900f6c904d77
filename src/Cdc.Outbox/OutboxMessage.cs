using System.Diagnostics.CodeAnalysis;
using System.Text.Json.Serialization.Metadata;

namespace Cdc.Outbox;

/// <summary>
/// One event a service records in its outbox, in the same transaction as the business change it describes.
/// The connector turns it into a Kafka record: topic from <see cref="AggregateType"/>, key <see cref="AggregateId"/>
/// (per-aggregate order), headers <c>id</c>, <c>event_type</c> and every entry of <see cref="Headers"/>.
/// </summary>
public sealed class OutboxMessage
{
    public OutboxMessage(string aggregateType, string aggregateId, string eventType, OutboxPayload payload)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(aggregateType);
        ArgumentNullException.ThrowIfNull(aggregateId);
        ArgumentException.ThrowIfNullOrWhiteSpace(eventType);
        ArgumentNullException.ThrowIfNull(payload);
        AggregateType = aggregateType;
        AggregateId = aggregateId;
        EventType = eventType;
        Payload = payload;
    }

    /// <summary>A message whose payload is <paramref name="payload"/> serialized as JSON (reflection-based, web defaults).</summary>
    [RequiresUnreferencedCode(OutboxPayload.ReflectionJson)]
    [RequiresDynamicCode(OutboxPayload.ReflectionJson)]
    public static OutboxMessage Json<T>(string aggregateType, string aggregateId, string eventType, T payload) =>
        new(aggregateType, aggregateId, eventType, OutboxPayload.Json(payload));

    /// <summary>A message whose payload is <paramref name="payload"/> serialized as JSON with source-generated metadata (trimming and NativeAOT safe).</summary>
    public static OutboxMessage Json<T>(string aggregateType, string aggregateId, string eventType, T payload, JsonTypeInfo<T> typeInfo) =>
        new(aggregateType, aggregateId, eventType, OutboxPayload.Json(payload, typeInfo));

    /// <summary>
    /// The event id consumers deduplicate on. Version 7 by default (<see cref="OutboxId"/>): time-ordered, so the primary
    /// key index of the outbox table grows at its end like a sequence instead of splitting pages at random, and
    /// monotonic, so rows read back from the table by (created_at, id) come in the order they were written.
    /// </summary>
    public Guid Id { get; init; } = OutboxId.New();

    public string AggregateType { get; }
    public string AggregateId { get; }
    public string EventType { get; }
    public OutboxPayload Payload { get; }

    /// <summary>
    /// Headers the record carries (string values). The current <see cref="System.Diagnostics.Activity"/>'s
    /// <c>traceparent</c>/<c>tracestate</c> are added when writing unless set here.
    /// </summary>
    public IDictionary<string, string> Headers { get; init; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>When the event happened. Unset: the table's default (the transaction's <c>now()</c>).</summary>
    public DateTimeOffset? CreatedAt { get; init; }
}
