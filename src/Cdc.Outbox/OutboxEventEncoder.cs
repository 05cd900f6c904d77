using Cdc.Outbox.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace Cdc.Outbox;

/// <summary>
/// The message as the <c>cdc.outbox.v1.OutboxEvent</c> the connector would make of the row, for table-less mode.
/// <c>source</c> stays empty: the commit position is only known to whoever decodes the WAL.
/// </summary>
static class OutboxEventEncoder
{
    public static byte[] Encode(OutboxMessage message, DateTimeOffset now)
    {
        var evt = new OutboxEvent
        {
            Id = message.Id.ToString("D"),
            AggregateType = message.AggregateType,
            AggregateId = message.AggregateId,
            EventType = message.EventType,
            Payload = ByteString.CopyFrom(message.Payload.Bytes.Span),
            PayloadContentType = message.Payload.ContentType,
            CreatedAt = Timestamp.FromDateTimeOffset(message.CreatedAt ?? now),
        };
        evt.Headers.Add(OutboxHeaders.For(message, withContentType: false));
        return evt.ToByteArray();
    }
}
