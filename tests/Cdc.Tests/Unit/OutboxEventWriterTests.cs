using Cdc.Mapping;
using Cdc.Outbox.V1;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;

namespace Cdc.Tests.Unit;

/// <summary>
/// The relay writes an event's Protobuf bytes straight from the row's values (<see cref="OutboxEventWriter"/>); consumers
/// parse them with the generated code. These compare its bytes with the generated serializer's on every shape of event.
/// </summary>
public class OutboxEventWriterTests
{
    static readonly string[] Texts = ["", "a", "order", "Zoë ✓ 注文", new string('x', 130), new string('é', 9_000)];
    static readonly DateTime[] Times =
    [
        DateTime.UnixEpoch, DateTime.UnixEpoch.AddTicks(1), DateTime.UnixEpoch.AddTicks(-1), new(1, 1, 1, 0, 0, 0, DateTimeKind.Utc),
        new DateTime(9999, 12, 31, 23, 59, 59, DateTimeKind.Utc).AddTicks(9_999_999), new(1969, 7, 20, 20, 17, 40, 123, DateTimeKind.Utc),
        new(2026, 11, 30, 8, 0, 0, 1, DateTimeKind.Utc), new(2000, 1, 1, 0, 0, 1, DateTimeKind.Utc),
    ];

    /// <summary>What the writer is given: a row, its content type and headers, and its transaction.</summary>
    sealed record Fields(OutboxRow Row, string PayloadContentType, List<KeyValuePair<string, string>> Headers, TransactionInfo Source);

    static OutboxEvent Generated(Fields f)
    {
        var evt = new OutboxEvent
        {
            Id = f.Row.Id,
            AggregateType = f.Row.AggregateType ?? "",
            AggregateId = f.Row.AggregateId ?? "",
            EventType = f.Row.EventType ?? "",
            Payload = f.Row.Payload is null ? ByteString.Empty : ByteString.CopyFrom(f.Row.Payload),
            PayloadContentType = f.PayloadContentType,
            CreatedAt = f.Row.CreatedAt is { } c ? Timestamp.FromDateTime(c) : null,
            Source = new Source
            {
                CommitLsn = f.Source.CommitLsn,
                TransactionId = f.Source.Xid,
                CommitTime = Timestamp.FromDateTime(f.Source.CommitTime),
                Origin = f.Source.Origin,
            },
        };
        foreach (var (name, value) in f.Headers)
            evt.Headers.Add(name, value);
        return evt;
    }

    [Fact]
    public void The_bytes_are_the_generated_serializers_for_every_shape_of_event()
    {
        var random = new Random(11);
        string Text() => Texts[random.Next(Texts.Length)];
        var checkedEvents = 0;
        for (var i = 0; i < 3_000; i++)
        {
            var headers = new List<KeyValuePair<string, string>>();
            var count = random.Next(4);
            for (var h = 0; h < count; h++)
            {
                var name = h == 0 ? Text() : $"h{h}{Text()}";
                if (headers.All(kv => kv.Key != name))
                    headers.Add(new(name, Text()));
            }
            var payloadLength = new[] { -1, 0, 1, 127, 128, 16_383, 16_384, 300_000 }[random.Next(8)];
            var row = new OutboxRow
            {
                Id = i % 5 == 0 ? "" : Guid.NewGuid().ToString(),
                // A NULL column is an empty string in the event, as the mapper makes it.
                AggregateType = random.Next(6) == 0 ? null : Text(),
                AggregateId = random.Next(6) == 0 ? null : Text(),
                EventType = random.Next(6) == 0 ? null : Text(),
                Payload = payloadLength < 0 ? null : [.. Enumerable.Range(0, payloadLength).Select(b => (byte)b)],
                CreatedAt = random.Next(5) == 0 ? null : Times[random.Next(Times.Length)],
            };
            var fields = new Fields(row, Text(), headers, new TransactionInfo(
                new ulong[] { 0, 1, 0x16B3748, ulong.MaxValue }[random.Next(4)],
                new uint[] { 0, 1, 3_000_000_000, uint.MaxValue }[random.Next(4)],
                Times[random.Next(Times.Length)],
                (Origin)random.Next(5)));

            var written = OutboxEventWriter.Write(row, fields.PayloadContentType, headers, fields.Source);

            Assert.Equal(Generated(fields).ToByteArray(), written);
            Assert.Equal(Generated(fields), OutboxEvent.Parser.ParseFrom(written));
            checkedEvents++;
        }
        Assert.Equal(3_000, checkedEvents);
    }

    [Fact]
    public void Timestamps_are_split_as_the_well_known_type_splits_them()
    {
        foreach (var time in Times)
        {
            var expected = Timestamp.FromDateTime(time);
            Assert.Equal((expected.Seconds, expected.Nanos), OutboxEventWriter.TimestampOf(time));
        }
    }
}
