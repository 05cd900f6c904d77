using Cdc.Outbox.V1;
using Google.Protobuf;

namespace Cdc.Mapping;

/// <summary>
/// Writes an outbox row's <see cref="OutboxEvent"/> as Protobuf bytes straight from its values, field by field in the
/// order and with the omissions of the generated serializer (the same bytes: OutboxEventWriterTests compares the two on
/// every shape of row), without building the message, its headers map and its timestamps first: on the relay's hot path
/// those objects and the generated size-then-write passes over them were a tenth of its CPU.
/// </summary>
static class OutboxEventWriter
{
    /// <summary>An event's fields as the mapper has them; strings empty rather than null, as the message has them.</summary>
    public readonly ref struct Fields
    {
        public required string Id { get; init; }
        public required string AggregateType { get; init; }
        public required string AggregateId { get; init; }
        public required string EventType { get; init; }
        public required byte[]? Payload { get; init; }
        public required string PayloadContentType { get; init; }
        public required DateTime? CreatedAt { get; init; }
        /// <summary>In the map's order, names distinct.</summary>
        public required List<KeyValuePair<string, string>> Headers { get; init; }
        public required TransactionInfo Source { get; init; }
    }

    // Field tags: (field number << 3) | wire type 2 (length-delimited) or 0 (varint).
    const byte IdTag = 10, AggregateTypeTag = 18, AggregateIdTag = 26, EventTypeTag = 34, PayloadTag = 42, ContentTypeTag = 50,
        CreatedAtTag = 58, HeaderTag = 66, SourceTag = 74;
    const byte KeyTag = 10, ValueTag = 18; // a map entry's key and value
    const byte SecondsTag = 8, NanosTag = 16; // google.protobuf.Timestamp
    const byte CommitLsnTag = 8, TransactionIdTag = 16, CommitTimeTag = 26, OriginTag = 32; // Source

    public static byte[] Write(in Fields e)
    {
        var created = e.CreatedAt is { } c ? TimestampOf(c) : default;
        var commit = TimestampOf(e.Source.CommitTime);
        var createdSize = e.CreatedAt is null ? 0 : TimestampSize(created);
        var commitSize = TimestampSize(commit);
        var sourceSize = (e.Source.CommitLsn != 0 ? 1 + CodedOutputStream.ComputeUInt64Size(e.Source.CommitLsn) : 0)
                         + (e.Source.Xid != 0 ? 1 + CodedOutputStream.ComputeUInt32Size(e.Source.Xid) : 0)
                         + 1 + CodedOutputStream.ComputeLengthSize(commitSize) + commitSize
                         + (e.Source.Origin != 0 ? 1 + CodedOutputStream.ComputeEnumSize((int)e.Source.Origin) : 0);

        var size = StringSize(e.Id) + StringSize(e.AggregateType) + StringSize(e.AggregateId) + StringSize(e.EventType)
                   + (e.Payload is { Length: > 0 } payload ? 1 + CodedOutputStream.ComputeLengthSize(payload.Length) + payload.Length : 0)
                   + StringSize(e.PayloadContentType)
                   + (e.CreatedAt is null ? 0 : 1 + CodedOutputStream.ComputeLengthSize(createdSize) + createdSize)
                   + 1 + CodedOutputStream.ComputeLengthSize(sourceSize) + sourceSize;
        foreach (var (name, value) in e.Headers)
        {
            var entry = StringSize(name) + StringSize(value);
            size += 1 + CodedOutputStream.ComputeLengthSize(entry) + entry;
        }

        var bytes = new byte[size];
        var output = new CodedOutputStream(bytes);
        WriteString(output, IdTag, e.Id);
        WriteString(output, AggregateTypeTag, e.AggregateType);
        WriteString(output, AggregateIdTag, e.AggregateId);
        WriteString(output, EventTypeTag, e.EventType);
        if (e.Payload is { Length: > 0 })
        {
            output.WriteRawTag(PayloadTag);
            output.WriteBytes(UnsafeByteOperations.UnsafeWrap(e.Payload));
        }
        WriteString(output, ContentTypeTag, e.PayloadContentType);
        if (e.CreatedAt is not null)
        {
            output.WriteRawTag(CreatedAtTag);
            output.WriteLength(createdSize);
            WriteTimestamp(output, created);
        }
        foreach (var (name, value) in e.Headers)
        {
            output.WriteRawTag(HeaderTag);
            output.WriteLength(StringSize(name) + StringSize(value));
            WriteString(output, KeyTag, name);
            WriteString(output, ValueTag, value);
        }
        output.WriteRawTag(SourceTag);
        output.WriteLength(sourceSize);
        if (e.Source.CommitLsn != 0)
        {
            output.WriteRawTag(CommitLsnTag);
            output.WriteUInt64(e.Source.CommitLsn);
        }
        if (e.Source.Xid != 0)
        {
            output.WriteRawTag(TransactionIdTag);
            output.WriteUInt32(e.Source.Xid);
        }
        output.WriteRawTag(CommitTimeTag);
        output.WriteLength(commitSize);
        WriteTimestamp(output, commit);
        if (e.Source.Origin != 0)
        {
            output.WriteRawTag(OriginTag);
            output.WriteEnum((int)e.Source.Origin);
        }
        output.CheckNoSpaceLeft();
        return bytes;
    }

    static int StringSize(string value) => value.Length == 0 ? 0 : 1 + CodedOutputStream.ComputeStringSize(value);

    static void WriteString(CodedOutputStream output, byte tag, string value)
    {
        if (value.Length == 0)
            return;
        output.WriteRawTag(tag);
        output.WriteString(value);
    }

    /// <summary>As <c>Timestamp.FromDateTime</c> makes it: seconds since the Unix epoch (floor), nanoseconds 0 to 999,999,999.</summary>
    internal static (long Seconds, int Nanos) TimestampOf(DateTime time)
    {
        var ticks = time.Ticks - DateTime.UnixEpoch.Ticks;
        var seconds = Math.DivRem(ticks, TimeSpan.TicksPerSecond, out var rest);
        if (rest < 0)
        {
            seconds--;
            rest += TimeSpan.TicksPerSecond;
        }
        return (seconds, (int)(rest * 100));
    }

    static int TimestampSize((long Seconds, int Nanos) t) =>
        (t.Seconds != 0 ? 1 + CodedOutputStream.ComputeInt64Size(t.Seconds) : 0) + (t.Nanos != 0 ? 1 + CodedOutputStream.ComputeInt32Size(t.Nanos) : 0);

    static void WriteTimestamp(CodedOutputStream output, (long Seconds, int Nanos) t)
    {
        if (t.Seconds != 0)
        {
            output.WriteRawTag(SecondsTag);
            output.WriteInt64(t.Seconds);
        }
        if (t.Nanos != 0)
        {
            output.WriteRawTag(NanosTag);
            output.WriteInt32(t.Nanos);
        }
    }
}
