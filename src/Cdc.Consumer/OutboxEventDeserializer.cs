using Cdc.Contracts.SchemaRegistry;
using Cdc.Outbox.V1;
using Confluent.Kafka;
using Google.Protobuf;

namespace Cdc.Consumer;

/// <summary>
/// Reads the value of a record the connector produced: a Protobuf <c>cdc.outbox.v1.OutboxEvent</c>, plain or framed in
/// Confluent's Schema Registry wire format (<c>Cdc:Kafka:SchemaRegistry:Url</c> set on the connector); the two are told
/// apart by the first byte (<see cref="OutboxEventFraming.IsFramed"/>), so no registry is needed to read. Anything else
/// (no value, bytes that are not an OutboxEvent, an event without id) is refused with <see cref="InvalidDataException"/>,
/// which the Kafka client reports as a <see cref="ConsumeException"/> carrying the raw record.
/// </summary>
public sealed class OutboxEventDeserializer : IDeserializer<OutboxEvent>
{
    public static OutboxEventDeserializer Instance { get; } = new();

    public OutboxEvent Deserialize(ReadOnlySpan<byte> data, bool isNull, SerializationContext context)
    {
        if (isNull)
            throw new InvalidDataException($"A record on {context.Topic} has no value; every outbox record carries an OutboxEvent.");
        OutboxEvent evt;
        try
        {
            evt = OutboxEvent.Parser.ParseFrom(OutboxEventFraming.IsFramed(data) ? OutboxEventFraming.Unframe(data.ToArray(), out _).Span : data);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"A record on {context.Topic} is not a cdc.outbox.v1.OutboxEvent: {e.Message}", e);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"A record on {context.Topic} is not a cdc.outbox.v1.OutboxEvent: {e.Message}", e);
        }
        // Protobuf parses many byte strings into some message; an event without id cannot be deduplicated, so it is not ours.
        if (evt.Id.Length == 0)
            throw new InvalidDataException($"A record on {context.Topic} has no event id; it is not a cdc.outbox.v1.OutboxEvent.");
        return evt;
    }
}
