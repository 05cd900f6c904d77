using Cdc.Consumer;
using Cdc.Contracts.SchemaRegistry;
using Cdc.Outbox.V1;
using Confluent.Kafka;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace Cdc.Tests.Unit;

/// <summary>Confluent's wire format as Cdc.Contracts writes and reads it, checked against bytes written out by hand.</summary>
public class OutboxEventFramingTests
{
    static readonly OutboxEvent Known = new()
    {
        Id = "e1",
        AggregateType = "order",
        AggregateId = "o-1",
        EventType = "Placed",
        Payload = ByteString.CopyFromUtf8("{}"),
    };

    // Field by field: 1 "e1", 2 "order", 3 "o-1", 4 "Placed", 5 bytes "{}" (tag, length, content).
    const string KnownEventHex = "0A026531" + "12056F72646572" + "1A036F2D31" + "2206506C61636564" + "2A027B7D";

    [Fact]
    public void A_known_event_framed_with_schema_id_257_is_byte_0_the_big_endian_id_the_index_0_then_the_event()
    {
        var framed = OutboxEventFraming.Frame(257, Known);

        Assert.Equal("00" + "00000101" + "00" + KnownEventHex, Convert.ToHexString(framed));
        Assert.Equal("00" + "7FFFFFFF" + "00", Convert.ToHexString(OutboxEventFraming.Prefix(int.MaxValue)));
        Assert.Equal("00" + "00000001" + "00", Convert.ToHexString(OutboxEventFraming.Prefix(1)));
    }

    [Fact]
    public void Framed_and_plain_values_both_parse_and_are_told_apart_by_the_first_byte()
    {
        var plain = Known.ToByteArray();
        var framed = OutboxEventFraming.Frame(257, Known);

        Assert.False(OutboxEventFraming.IsFramed(plain));
        Assert.True(OutboxEventFraming.IsFramed(framed));
        Assert.Equal(Known, OutboxEventFraming.Parse(plain));
        Assert.Equal(Known, OutboxEventFraming.Parse(framed));
        OutboxEventFraming.Unframe(framed, out var schema);
        Assert.Equal(257, schema!.Value.Id);
        Assert.Equal([0], schema.Value.MessageIndexes);
        OutboxEventFraming.Unframe(plain, out var none);
        Assert.Null(none);
    }

    [Fact]
    public void A_value_framed_for_another_message_of_the_schema_or_cut_short_is_refused()
    {
        // Message index [1] (count 1, index 1, both zig-zag varints): Source, not OutboxEvent.
        var otherMessage = Convert.FromHexString("00" + "00000101" + "0202" + KnownEventHex);
        Assert.Contains("message [1]", Assert.Throws<InvalidDataException>(() => OutboxEventFraming.Parse(otherMessage)).Message);
        Assert.Throws<InvalidDataException>(() => OutboxEventFraming.Parse(new byte[] { 0, 0, 1 }));
    }

    [Fact]
    public void The_consumer_library_reads_framed_and_plain_values_alike()
    {
        var context = new SerializationContext(MessageComponentType.Value, "outbox.event.order");
        var plain = OutboxEventDeserializer.Instance.Deserialize(Known.ToByteArray(), false, context);
        var framed = OutboxEventDeserializer.Instance.Deserialize(OutboxEventFraming.Frame(101, Known), false, context);

        Assert.Equal(Known, plain);
        Assert.Equal(Known, framed);
        var wrong = Convert.FromHexString("00" + "00000101" + "0202" + KnownEventHex);
        Assert.Contains("not a cdc.outbox.v1.OutboxEvent",
            Assert.Throws<InvalidDataException>(() => OutboxEventDeserializer.Instance.Deserialize(wrong, false, context)).Message);
    }

    [Fact]
    public void The_schema_is_the_proto_files_descriptor_without_references_as_Confluents_serializers_register_it()
    {
        var schema = OutboxEventFraming.Schema();

        Assert.Equal(Confluent.SchemaRegistry.SchemaType.Protobuf, schema.SchemaType);
        Assert.Empty(schema.References);
        var file = FileDescriptorProto.Parser.ParseFrom(Convert.FromBase64String(schema.SchemaString));
        Assert.Equal("cdc/outbox/v1/outbox_event.proto", file.Name);
        Assert.Equal("cdc.outbox.v1", file.Package);
        Assert.Equal(["google/protobuf/timestamp.proto"], file.Dependency);
        Assert.Equal("OutboxEvent", file.MessageType[0].Name); // message index [0]
        Assert.Equal("cdc.outbox.v1.OutboxEvent", OutboxEventFraming.RecordName);
    }
}
