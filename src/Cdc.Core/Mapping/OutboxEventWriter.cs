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
    // Field tags: (field number << 3) | wire type 2 (length-delimited) or 0 (varint).
    const byte IdTag = 10, AggregateTypeTag = 18, AggregateIdTag = 26, EventTypeTag = 34, PayloadTag = 42, ContentTypeTag = 50,
        CreatedAtTag = 58, HeaderTag = 66, SourceTag = 74;
    const byte KeyTag = 10, ValueTag = 18; // a map entry's key and value
    const byte SecondsTag = 8, NanosTag = 16; // google.protobuf.Timestamp
    const byte CommitLsnTag = 8, TransactionIdTag = 16, CommitTimeTag = 26, OriginTag = 32; // Source

    /// <summary>The row's event, as the mapper's <c>EventOf</c> makes it: missing strings empty.</summary>
    /// <param name="headers">The headers in the map's order, names distinct.</param>
    public static byte[] Write(OutboxRow row, string contentType, List<KeyValuePair<string, string>> headers, TransactionInfo source)
    {
        var (aggregateType, aggregateId, eventType) = (row.AggregateType ?? "", row.AggregateId ?? "", row.EventType ?? "");
        var created = row.CreatedAt is { } c ? TimestampOf(c) : default;
        var commit = TimestampOf(source.CommitTime);
        var createdSize = row.CreatedAt is null ? 0 : TimestampSize(created);
        var commitSize = TimestampSize(commit);
        var sourceSize = (source.CommitLsn != 0 ? 1 + CodedOutputStream.ComputeUInt64Size(source.CommitLsn) : 0)
                         + (source.Xid != 0 ? 1 + CodedOutputStream.ComputeUInt32Size(source.Xid) : 0)
                         + 1 + CodedOutputStream.ComputeLengthSize(commitSize) + commitSize
                         + (source.Origin != 0 ? 1 + CodedOutputStream.ComputeEnumSize((int)source.Origin) : 0);

        var size = StringSize(row.Id) + StringSize(aggregateType) + StringSize(aggregateId) + StringSize(eventType)
                   + (row.Payload is { Length: > 0 } payload ? 1 + CodedOutputStream.ComputeLengthSize(payload.Length) + payload.Length : 0)
                   + StringSize(contentType)
                   + (row.CreatedAt is null ? 0 : 1 + CodedOutputStream.ComputeLengthSize(createdSize) + createdSize)
                   + 1 + CodedOutputStream.ComputeLengthSize(sourceSize) + sourceSize;
        foreach (var (name, value) in headers)
        {
            var entry = StringSize(name) + StringSize(value);
            size += 1 + CodedOutputStream.ComputeLengthSize(entry) + entry;
        }

        var bytes = new byte[size];
        var output = new CodedOutputStream(bytes);
        WriteString(output, IdTag, row.Id);
        WriteString(output, AggregateTypeTag, aggregateType);
        WriteString(output, AggregateIdTag, aggregateId);
        WriteString(output, EventTypeTag, eventType);
        if (row.Payload is { Length: > 0 })
        {
            output.WriteRawTag(PayloadTag);
            output.WriteBytes(UnsafeByteOperations.UnsafeWrap(row.Payload));
        }
        WriteString(output, ContentTypeTag, contentType);
        if (row.CreatedAt is not null)
        {
            output.WriteRawTag(CreatedAtTag);
            output.WriteLength(createdSize);
            WriteTimestamp(output, created);
        }
        foreach (var (name, value) in headers)
        {
            output.WriteRawTag(HeaderTag);
            output.WriteLength(StringSize(name) + StringSize(value));
            WriteString(output, KeyTag, name);
            WriteString(output, ValueTag, value);
        }
        output.WriteRawTag(SourceTag);
        output.WriteLength(sourceSize);
        if (source.CommitLsn != 0)
        {
            output.WriteRawTag(CommitLsnTag);
            output.WriteUInt64(source.CommitLsn);
        }
        if (source.Xid != 0)
        {
            output.WriteRawTag(TransactionIdTag);
            output.WriteUInt32(source.Xid);
        }
        output.WriteRawTag(CommitTimeTag);
        output.WriteLength(commitSize);
        WriteTimestamp(output, commit);
        if (source.Origin != 0)
        {
            output.WriteRawTag(OriginTag);
            output.WriteEnum((int)source.Origin);
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
