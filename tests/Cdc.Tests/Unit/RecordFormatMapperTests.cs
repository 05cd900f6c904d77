using System.Text;
using Cdc.Configuration;
using Cdc.Contracts;
using Cdc.Mapping;
using Cdc.Outbox.V1;
using Cdc.Publishing;
using Confluent.Kafka;
using Google.Protobuf;

namespace Cdc.Tests.Unit;

/// <summary>Debezium-compatible records (ValueFormat=Payload) and additional placements, from rows and from emitted events.</summary>
public class RecordFormatMapperTests
{
    static readonly TransactionInfo Transaction = new(0x16B3748, 731, new DateTime(2026, 11, 27, 10, 0, 0, DateTimeKind.Utc));

    static OutboxEventMapper Mapper(ValueFormat format, string placement) => new(new TopicRouter("outbox.event.{aggregate_type}"), "outbox.dlq",
        new RecordFormat
        {
            Value = format,
            Placements = AdditionalPlacement.Parse(placement, format),
            Columns = new OutboxColumns { AggregateType = "aggregatetype", AggregateId = "aggregateid", EventType = "type", Headers = "" },
        });

    // Placed: type → eventType header, tenant → header, shard → partition (in the order of the placement string).
    const string Placement = "type:header:eventType,tenant:header,shard:partition";

    static OutboxRow Row(PlacedValue? tenant, PlacedValue? shard, string? headers = null) => new()
    {
        Id = "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        AggregateType = "order",
        AggregateId = "o-42",
        EventType = "OrderPlaced",
        Payload = Encoding.UTF8.GetBytes("""{"total":12.5}"""),
        Headers = headers is null ? null : Encoding.UTF8.GetBytes(headers),
        CreatedAt = new DateTime(2026, 11, 27, 9, 59, 59, DateTimeKind.Utc),
        Placed = [new PlacedValue("OrderPlaced"), tenant, shard],
    };

    static string? Header(Headers headers, string name) =>
        headers.TryGetLastBytes(name, out var bytes) ? bytes is null ? null : Encoding.UTF8.GetString(bytes) : "(absent)";

    [Fact]
    public void Payload_records_carry_the_payload_as_value_and_id_placements_and_row_headers_as_headers()
    {
        var result = Mapper(ValueFormat.Payload, Placement).Map(
            Row(new PlacedValue("acme"), new PlacedValue("2", 2), """{"traceparent":"00-abc-def-01","eventType":"shadowed","id":"x"}"""),
            Transaction);

        var record = Assert.IsType<OutboxRecord>(result.Record);
        Assert.Equal("outbox.event.order", record.Topic);
        Assert.Equal("o-42", Encoding.UTF8.GetString(record.Key));
        Assert.Equal("""{"total":12.5}""", Encoding.UTF8.GetString(record.Value));
        Assert.Equal(["id", "eventType", "tenant", "traceparent"], record.Headers.Select(h => h.Key));
        Assert.Equal("3f2504e0-4f89-11d3-9a0c-0305e82c3301", Header(record.Headers, "id"));
        Assert.Equal("OrderPlaced", Header(record.Headers, "eventType"));
        Assert.Equal("acme", Header(record.Headers, "tenant"));
        Assert.Equal(2, record.Partition);
        // Its dead letters are still OutboxEvents, made from the event it carries.
        var deadLetter = Mapper(ValueFormat.Payload, Placement).DeadLetter(record, "refused", DeadLetterForm.WithoutPayload);
        var evt = OutboxEvent.Parser.ParseFrom(deadLetter.Value);
        Assert.Equal("3f2504e0-4f89-11d3-9a0c-0305e82c3301", evt.Id);
        Assert.Equal("OrderPlaced", evt.EventType);
        Assert.True(evt.Payload.IsEmpty);
        Assert.Null(deadLetter.Partition);
    }

    [Fact]
    public void A_NULL_header_column_is_a_header_without_value_and_a_partition_that_is_not_one_is_a_dead_letter()
    {
        var mapper = Mapper(ValueFormat.Payload, Placement);
        var nullTenant = Assert.IsType<OutboxRecord>(mapper.Map(Row(new PlacedValue(null), new PlacedValue("0", 0)), Transaction).Record);
        Assert.Null(Header(nullTenant.Headers, "tenant"));
        Assert.Equal(0, nullTenant.Partition);

        foreach (var (shard, shown) in new[] { (new PlacedValue("-1", -1), "-1"), (new PlacedValue(null), "NULL"), (new PlacedValue("4294967296", 4294967296), "4294967296") })
        {
            var result = mapper.Map(Row(new PlacedValue("acme"), shard), Transaction);
            Assert.True(result.IsDeadLetter);
            Assert.Equal("unroutable", result.DeadLetterReason);
            Assert.Contains($"partition column shard is {shown}", Encoding.UTF8.GetString(result.DeadLetter!.Headers.GetLastBytes("error")));
            Assert.Equal("3f2504e0-4f89-11d3-9a0c-0305e82c3301", OutboxEvent.Parser.ParseFrom(result.DeadLetter.Value).Id);
        }
    }

    [Fact]
    public void OutboxEvent_records_get_the_placements_too()
    {
        var record = Mapper(ValueFormat.OutboxEvent, "type:header:eventType,tenant:header,shard:partition")
            .Map(Row(new PlacedValue("acme"), new PlacedValue("1", 1)), Transaction).Record!;
        Assert.Equal(["id", "event_type", "eventType", "tenant"], record.Headers.Select(h => h.Key));
        Assert.Equal(1, record.Partition);
        Assert.Equal("OrderPlaced", OutboxEvent.Parser.ParseFrom(record.Value).EventType);
    }

    [Fact]
    public void Emitted_events_place_the_columns_that_hold_their_own_fields_and_nothing_else()
    {
        var emitted = new OutboxEvent
        {
            Id = "e-1", AggregateType = "order", AggregateId = "o-1", EventType = "OrderPlaced",
            Payload = ByteString.CopyFromUtf8("""{"n":1}"""), PayloadContentType = "application/json",
        };
        var record = Mapper(ValueFormat.Payload, Placement).Map(emitted.ToByteArray(), Transaction, 0x10).Record!;
        Assert.Equal("""{"n":1}""", Encoding.UTF8.GetString(record.Value));
        Assert.Equal(["id", "eventType"], record.Headers.Select(h => h.Key));
        Assert.Null(record.Partition);
    }
}
