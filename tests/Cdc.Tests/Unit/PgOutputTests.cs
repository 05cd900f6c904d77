using System.Buffers.Binary;
using System.Text;
using Cdc.Contracts;
using Cdc.Mapping;
using Cdc.Replication;
using Cdc.Replication.PgOutput;

namespace Cdc.Tests.Unit;

/// <summary>
/// pgoutput's messages (protocol version 1) as the connector parses them from an XLogData message's bytes. The same
/// parser reads every end-to-end test's stream from a real PostgreSQL; these pin the edges a healthy server rarely sends.
/// </summary>
public class PgOutputTests
{
    static readonly (string, uint)[] OutboxColumns =
    [
        ("id", 2950), ("aggregate_type", 25), ("aggregate_id", 25), ("event_type", 25), ("payload", 3802), ("headers", 3802),
        ("created_at", 1184), ("note", 25),
    ];

    static OutboxRelationLayout Layout() => OutboxRelationLayout.For(OutboxColumns, new OutboxColumns(), "public.outbox");

    /// <summary>Builds a message the way the server writes it: big-endian integers, NUL-terminated strings.</summary>
    sealed class Message
    {
        readonly List<byte> _bytes = [];
        public Message Byte(char b) { _bytes.Add((byte)b); return this; }
        public Message Int16(short v) { var b = new byte[2]; BinaryPrimitives.WriteInt16BigEndian(b, v); _bytes.AddRange(b); return this; }
        public Message Int32(int v) { var b = new byte[4]; BinaryPrimitives.WriteInt32BigEndian(b, v); _bytes.AddRange(b); return this; }
        public Message Int64(long v) { var b = new byte[8]; BinaryPrimitives.WriteInt64BigEndian(b, v); _bytes.AddRange(b); return this; }
        public Message String(string s) { _bytes.AddRange(Encoding.UTF8.GetBytes(s)); _bytes.Add(0); return this; }
        public Message Value(byte[] v) { Byte('b').Int32(v.Length); _bytes.AddRange(v); return this; }
        public Message Text(string v) => Value(Encoding.UTF8.GetBytes(v));
        public byte[] ToArray() => [.. _bytes];
    }

    static byte[] Jsonb(string json) => [1, .. Encoding.UTF8.GetBytes(json)];

    static Message Insert(int columns) => new Message().Int32(16384).Byte('N').Int16((short)columns);

    static OutboxRow Read(byte[] insert, OutboxRelationLayout layout)
    {
        var reader = new PgOutputReader(insert);
        Assert.Equal(16384u, InsertMessage.ReadRelationId(ref reader));
        return OutboxRowReader.Read(ref reader, layout);
    }

    [Fact]
    public void An_insert_of_every_outbox_column_becomes_the_row_with_its_values()
    {
        var id = Guid.Parse("3f2504e0-4f89-11d3-9a0c-0305e82c3301");
        var insert = Insert(8)
            .Value(id.ToByteArray(bigEndian: true)).Text("order").Text("o-1").Text("OrderPlaced")
            .Value(Jsonb("""{"total": 5}""")).Value(Jsonb("""{"traceparent": "00-ab"}"""))
            .Value(BigEndianBytes(86_401_500_000)).Text("not read").ToArray();

        var row = Read(insert, Layout());

        Assert.Null(row.ReadError);
        Assert.Equal("3f2504e0-4f89-11d3-9a0c-0305e82c3301", row.Id);
        Assert.Equal(("order", "o-1", "OrderPlaced"), (row.AggregateType, row.AggregateId, row.EventType));
        Assert.Equal("""{"total": 5}""", Encoding.UTF8.GetString(row.Payload!));
        Assert.Equal("""{"traceparent": "00-ab"}""", Encoding.UTF8.GetString(row.Headers!));
        Assert.Equal(new DateTime(2000, 1, 2, 0, 0, 1, 500, DateTimeKind.Utc), row.CreatedAt);
    }

    [Fact]
    public void Values_are_copied_out_of_the_message_so_the_reused_buffer_can_take_the_next_one()
    {
        var insert = Insert(8)
            .Value(Guid.NewGuid().ToByteArray(bigEndian: true)).Text("order").Text("o-1").Text("OrderPlaced")
            .Value(Jsonb("""{"total": 5}""")).Value(Jsonb("{}")).Value(BigEndianBytes(0)).Text("x").ToArray();
        var row = Read(insert, Layout());

        Array.Clear(insert);

        Assert.Equal("""{"total": 5}""", Encoding.UTF8.GetString(row.Payload!));
        Assert.Equal("{}", Encoding.UTF8.GetString(row.Headers!));
        Assert.Equal("o-1", row.AggregateId);
    }

    [Fact]
    public void Nulls_and_text_values_are_read_and_a_column_the_layout_does_not_know_is_skipped()
    {
        // A text-format value ('t') carries its length like a binary one; columns past the layout's are skipped whole.
        var full = Insert(9)
            .Value(Guid.Empty.ToByteArray(bigEndian: true)).Text("order").Text("o-1").Text("OrderPlaced")
            .Byte('n').Byte('n').Byte('n').Byte('t').Int32(3).ToArray();
        full = [.. full, .. "abc"u8.ToArray(), .. new Message().Text("extra column").ToArray()];

        var row = Read(full, Layout());

        Assert.Null(row.ReadError);
        Assert.Null(row.Payload);
        Assert.Null(row.Headers);
        Assert.Null(row.CreatedAt);
        Assert.Equal("OrderPlaced", row.EventType);
    }

    [Fact]
    public void An_unchanged_toasted_value_of_a_read_column_makes_the_row_unreadable_instead_of_empty()
    {
        var insert = Insert(8)
            .Value(Guid.Empty.ToByteArray(bigEndian: true)).Text("order").Text("o-1").Text("OrderPlaced")
            .Byte('u').Byte('n').Value(BigEndianBytes(0)).Byte('u').ToArray();

        var row = Read(insert, Layout());

        Assert.Equal("column payload arrived as an unchanged TOASTed value, without its value", row.ReadError);
    }

    [Fact]
    public void A_message_shorter_than_its_fields_is_a_protocol_error_not_a_misread_row()
    {
        var full = Insert(8)
            .Value(Guid.Empty.ToByteArray(bigEndian: true)).Text("order").Text("o-1").Text("OrderPlaced")
            .Value(Jsonb("{}")).Value(Jsonb("{}")).Value(BigEndianBytes(0)).Text("x").ToArray();
        for (var cut = 5; cut < full.Length; cut += 7)
        {
            var truncated = full[..cut];
            Assert.Throws<InvalidDataException>(() => Read(truncated, Layout()));
        }
        var noNul = new Message().Int32(1).ToArray().Concat("public"u8.ToArray()).ToArray();
        Assert.Throws<InvalidDataException>(() =>
        {
            var reader = new PgOutputReader(noNul);
            RelationMessage.Read(ref reader);
        });
    }

    [Fact]
    public void Begin_relation_message_and_commit_are_read_field_by_field()
    {
        var begin = new Message().Int64(0x16B3748).Int64(86_400_000_000).Int32(unchecked((int)3_000_000_000)).ToArray();
        var reader = new PgOutputReader(begin);
        var transaction = BeginMessage.Read(ref reader);
        Assert.Equal((0x16B3748ul, 3_000_000_000u, new DateTime(2000, 1, 2, 0, 0, 0, DateTimeKind.Utc)),
            (transaction.CommitLsn, transaction.Xid, transaction.CommitTime));

        var relation = new Message().Int32(16384).String("sales").String("outbox").Byte('d').Int16(2)
            .Byte('\x01').String("id").Int32(2950).Int32(-1).Byte('\0').String("payload").Int32(3802).Int32(-1).ToArray();
        reader = new PgOutputReader(relation);
        var read = RelationMessage.Read(ref reader);
        Assert.Equal((16384u, "sales", "outbox"), (read.RelationId, read.Namespace, read.RelationName));
        Assert.Equal([new RelationColumn("id", 2950), new RelationColumn("payload", 3802)], read.Columns);

        var message = new Message().Byte('\x01').Int64(0x200).String("cdc.signal").Int32(3).ToArray().Concat("abc"u8.ToArray()).ToArray();
        reader = new PgOutputReader(message);
        var (transactional, lsn, prefix) = LogicalMessage.ReadHeader(ref reader);
        Assert.Equal((true, 0x200ul, "cdc.signal"), (transactional, lsn, prefix));
        Assert.Equal("abc", Encoding.UTF8.GetString(reader.Take(reader.Int32())));

        var commit = new Message().Byte('\0').Int64(0x16B3748).Int64(0x16B3778).Int64(86_400_000_000).ToArray();
        reader = new PgOutputReader(commit);
        Assert.Equal(0x16B3778ul, CommitMessage.ReadEndLsn(ref reader));
    }

    [Fact]
    public void Repeated_aggregate_and_event_types_are_read_once_and_other_values_are_never_mistaken_for_them()
    {
        var layout = Layout();
        OutboxRow Row(string aggregateType, byte[] eventType) => Read(Insert(8)
            .Value(Guid.NewGuid().ToByteArray(bigEndian: true)).Text(aggregateType).Text("o-1").Value(eventType)
            .Value(Jsonb("{}")).Value(Jsonb("{}")).Value(BigEndianBytes(0)).Text("x").ToArray(), layout);

        var first = Row("order", "OrderPlaced"u8.ToArray());
        var second = Row("order", "OrderPlaced"u8.ToArray());
        Assert.Same(first.AggregateType, second.AggregateType);
        Assert.Same(first.EventType, second.EventType);

        var other = Row("orders", "OrderPlace"u8.ToArray());
        Assert.Equal(("orders", "OrderPlace"), (other.AggregateType, other.EventType));
        var notUtf8 = Row("order", [0x4F, 0xFF]);
        Assert.StartsWith("column EventType could not be read", notUtf8.ReadError);
        Assert.Equal("OrderPlaced", Row("order", "OrderPlaced"u8.ToArray()).EventType);
    }

    static byte[] BigEndianBytes(long value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteInt64BigEndian(bytes, value);
        return bytes;
    }
}
