using Cdc.Outbox.V1;
using Confluent.SchemaRegistry;
using Google.Protobuf;

namespace Cdc.Contracts.SchemaRegistry;

/// <summary>
/// Confluent's Schema Registry wire format for <see cref="OutboxEvent"/> values, as Confluent's Protobuf serializers
/// write it and their deserializers (Java, Python, JavaScript, .NET) read it: byte 0, the schema id (4 bytes, big-endian),
/// the message-index array (<c>[0]</c>, written as one 0 byte: <c>OutboxEvent</c> is the first message of its file), then
/// the Protobuf bytes. Prefix and parsing are Confluent.SchemaRegistry's <see cref="SchemaId"/>, not a copy of it.
/// </summary>
/// <remarks>
/// Needs the Confluent.SchemaRegistry package at run time (Cdc.Core and Cdc.Consumer bring it; this assembly does not,
/// so that services that only write rows do not carry a Kafka client).
/// </remarks>
public static class OutboxEventFraming
{
    /// <summary>The message's full name: the record name of the Record and TopicRecord subject name strategies.</summary>
    public static string RecordName => OutboxEvent.Descriptor.FullName;

    /// <summary><c>OutboxEvent</c>'s position in its .proto file.</summary>
    static readonly IReadOnlyList<int> FirstMessage = [0];

    /// <summary>
    /// The schema as Confluent's serializers register it: <c>outbox_event.proto</c>'s FileDescriptorProto in base64, with
    /// no references (its one import, <c>google/protobuf/timestamp.proto</c>, is well known to every registry, and
    /// Confluent's serializers never register <c>google/protobuf/*</c> as references).
    /// </summary>
    public static Schema Schema() =>
        new(Convert.ToBase64String(OutboxEventReflection.Descriptor.SerializedData.Span), [], SchemaType.Protobuf);

    /// <summary>What goes before every value framed with schema <paramref name="schemaId"/>: byte 0, the id, the index <c>[0]</c>.</summary>
    public static byte[] Prefix(int schemaId)
    {
        var id = new SchemaId(SchemaType.Protobuf, schemaId, (string?)null, FirstMessage);
        var prefix = new byte[id.CalculateIdSize()];
        id.WriteIdToBytes(prefix);
        return prefix;
    }

    /// <summary>The value framed: <paramref name="prefix"/> (from <see cref="Prefix"/>) and the serialized event.</summary>
    public static byte[] Frame(ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> serializedEvent)
    {
        var framed = GC.AllocateUninitializedArray<byte>(prefix.Length + serializedEvent.Length);
        prefix.CopyTo(framed);
        serializedEvent.CopyTo(framed.AsSpan(prefix.Length));
        return framed;
    }

    /// <summary>The event serialized and framed with schema <paramref name="schemaId"/>.</summary>
    public static byte[] Frame(int schemaId, OutboxEvent evt) => Frame(Prefix(schemaId), evt.ToByteArray());

    /// <summary>
    /// Whether the value is framed. A serialized <c>OutboxEvent</c> never starts with 0 or 1: its first byte is a field
    /// tag, and field number 0 does not exist. So the magic bytes of Confluent's two framings (0: schema id, 1: schema
    /// GUID) tell framed from plain values without a registry.
    /// </summary>
    public static bool IsFramed(ReadOnlySpan<byte> value) =>
        value.Length > 0 && value[0] is SchemaId.MAGIC_BYTE_V0 or SchemaId.MAGIC_BYTE_V1;

    /// <summary>
    /// The serialized event inside a value, framed or not, and the schema it was framed with (null when not framed).
    /// </summary>
    /// <exception cref="InvalidDataException">The value is framed but truncated, or names another message of the schema than <c>OutboxEvent</c>.</exception>
    public static ReadOnlyMemory<byte> Unframe(ReadOnlyMemory<byte> value, out SchemaId? schema)
    {
        if (!IsFramed(value.Span))
        {
            schema = null;
            return value;
        }
        var id = new SchemaId(SchemaType.Protobuf);
        ReadOnlyMemory<byte> message;
        try
        {
            message = id.FromBytes(value);
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or InvalidOperationException or OverflowException)
        {
            throw new InvalidDataException($"The value starts like Confluent's wire format (byte {value.Span[0]}) but is not framed: {e.Message}", e);
        }
        if (id.MessageIndexes is not [0])
            throw new InvalidDataException(
                $"The value is framed for message [{string.Join(", ", id.MessageIndexes ?? [])}] of its schema; {RecordName} is message [0]");
        schema = id;
        return message;
    }

    /// <summary>Parses a value, framed or plain, into the event.</summary>
    /// <exception cref="InvalidDataException">A framed value that is truncated or framed for another message.</exception>
    /// <exception cref="InvalidProtocolBufferException">The bytes are not an <c>OutboxEvent</c>.</exception>
    public static OutboxEvent Parse(ReadOnlyMemory<byte> value) => OutboxEvent.Parser.ParseFrom(Unframe(value, out _).Span);
}
