using System.Text;
using Cdc.Mapping;
using Cdc.Publishing;
using Cdc.Outbox.V1;
using Confluent.Kafka;

namespace Cdc.Tests.Unit;

public class OutboxEventMapperTests
{
    static readonly OutboxEventMapper Mapper = new(new TopicRouter("outbox.event.{aggregate_type}"), "outbox.dlq");
    static readonly TransactionInfo Transaction = new(0x16B3748, 731, new DateTime(2026, 11, 27, 10, 0, 0, DateTimeKind.Utc));

    static OutboxRow Row(Action<OutboxRow>? change = null)
    {
        var row = new OutboxRow
        {
            Id = "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            AggregateType = "order",
            AggregateId = "o-42",
            EventType = "OrderPlaced",
            Payload = Encoding.UTF8.GetBytes("""{"total":12.5}"""),
            PayloadKind = PayloadKind.Json,
            Headers = Utf8("""{"traceparent":"00-abc-def-01","attempt":2,"flags":{"a":true}}"""),
            CreatedAt = new DateTime(2026, 11, 27, 9, 59, 59, DateTimeKind.Utc),
        };
        change?.Invoke(row);
        return row;
    }

    static byte[] Utf8(string json) => Encoding.UTF8.GetBytes(json);

    static string Header(Headers headers, string name) => Encoding.UTF8.GetString(headers.GetLastBytes(name));

    [Fact]
    public void Maps_a_row_to_the_contract_record()
    {
        var result = Mapper.Map(Row(), Transaction);

        var record = Assert.IsType<OutboxRecord>(result.Record);
        Assert.False(result.IsDeadLetter);
        Assert.Equal("outbox.event.order", record.Topic);
        Assert.Equal("o-42", Encoding.UTF8.GetString(record.Key));
        Assert.Equal(["id", "event_type", "traceparent", "attempt", "flags"], record.Headers.Select(h => h.Key));
        Assert.Equal("3f2504e0-4f89-11d3-9a0c-0305e82c3301", Header(record.Headers, "id"));
        Assert.Equal("OrderPlaced", Header(record.Headers, "event_type"));
        Assert.Equal("00-abc-def-01", Header(record.Headers, "traceparent"));
        Assert.Equal("2", Header(record.Headers, "attempt"));
        Assert.Equal("""{"a":true}""", Header(record.Headers, "flags"));

        var evt = OutboxEvent.Parser.ParseFrom(record.Value);
        Assert.Equal("3f2504e0-4f89-11d3-9a0c-0305e82c3301", evt.Id);
        Assert.Equal("order", evt.AggregateType);
        Assert.Equal("o-42", evt.AggregateId);
        Assert.Equal("OrderPlaced", evt.EventType);
        Assert.Equal("""{"total":12.5}""", evt.Payload.ToStringUtf8());
        Assert.Equal("application/json", evt.PayloadContentType);
        Assert.Equal(new DateTime(2026, 11, 27, 9, 59, 59, DateTimeKind.Utc), evt.CreatedAt.ToDateTime());
        Assert.Equal("00-abc-def-01", evt.Headers["traceparent"]);
        Assert.Equal("2", evt.Headers["attempt"]);
        Assert.Equal(0x16B3748UL, evt.Source.CommitLsn);
        Assert.Equal(731U, evt.Source.TransactionId);
        Assert.Equal(Transaction.CommitTime, evt.Source.CommitTime.ToDateTime());
    }

    [Fact]
    public void Row_headers_named_id_or_event_type_do_not_shadow_the_connectors_headers()
    {
        var record = Mapper.Map(Row(r => r.Headers = Utf8("""{"id":"not-the-id","event_type":"Other","tenant":"acme"}""")), Transaction).Record!;
        Assert.Equal(["id", "event_type", "tenant"], record.Headers.Select(h => h.Key));
        Assert.Equal("3f2504e0-4f89-11d3-9a0c-0305e82c3301", Header(record.Headers, "id"));
        Assert.Equal("OrderPlaced", Header(record.Headers, "event_type"));
        Assert.Equal("not-the-id", OutboxEvent.Parser.ParseFrom(record.Value).Headers["id"]);
    }

    [Fact]
    public void Bytea_payload_is_octet_stream_unless_a_header_says_otherwise()
    {
        var bytes = new byte[] { 0, 1, 2, 255 };
        var plain = OutboxEvent.Parser.ParseFrom(Mapper.Map(Row(r => { r.PayloadKind = PayloadKind.Bytes; r.Payload = bytes; r.Headers = null; }), Transaction).Record!.Value);
        Assert.Equal("application/octet-stream", plain.PayloadContentType);
        Assert.Equal(bytes, plain.Payload.ToByteArray());

        var typed = OutboxEvent.Parser.ParseFrom(Mapper.Map(Row(r =>
        {
            r.PayloadKind = PayloadKind.Bytes;
            r.Payload = bytes;
            r.Headers = Utf8("""{"content-type":"application/x-protobuf"}""");
        }), Transaction).Record!.Value);
        Assert.Equal("application/x-protobuf", typed.PayloadContentType);
    }

    [Theory]
    [InlineData("""[1,2]""", "headers is a JSON array, not an object")]
    [InlineData("""{"a":""", "headers is not valid JSON")]
    public void Headers_that_are_not_an_object_go_to_the_dead_letter_topic(string headers, string reason)
    {
        var result = Mapper.Map(Row(r => r.Headers = Utf8(headers)), Transaction);
        AssertDeadLetter(result, reason);
    }

    [Fact]
    public void Null_or_unroutable_aggregate_types_go_to_the_dead_letter_topic()
    {
        AssertDeadLetter(Mapper.Map(Row(r => r.AggregateType = null), Transaction), "aggregate_type is NULL");
        AssertDeadLetter(Mapper.Map(Row(r => r.AggregateType = "no/slashes"), Transaction), "does not make a valid Kafka topic name");
    }

    [Fact]
    public void Bytea_claimed_as_json_must_be_utf8()
    {
        var result = Mapper.Map(Row(r =>
        {
            r.PayloadKind = PayloadKind.Bytes;
            r.Payload = [0xC3, 0x28];
            r.Headers = Utf8("""{"content-type":"application/json"}""");
        }), Transaction);
        AssertDeadLetter(result, "not valid UTF-8");
    }

    [Fact]
    public void A_refused_record_becomes_a_dead_letter_whole_without_its_payload_or_as_headers_only()
    {
        var record = Mapper.Map(Row(), Transaction).Record!;
        var deadLetter = Mapper.DeadLetter(record, "too large", DeadLetterForm.WithoutPayload);
        Assert.Equal("outbox.dlq", deadLetter.Topic);
        Assert.Equal("too large", Header(deadLetter.Headers, "error"));
        var evt = OutboxEvent.Parser.ParseFrom(deadLetter.Value);
        Assert.True(evt.Payload.IsEmpty);
        Assert.Equal("OrderPlaced", evt.EventType);

        var kept = OutboxEvent.Parser.ParseFrom(Mapper.DeadLetter(record, "rejected", DeadLetterForm.Whole).Value);
        Assert.Equal("""{"total":12.5}""", kept.Payload.ToStringUtf8());

        var smallest = Mapper.DeadLetter(record, "refused", DeadLetterForm.HeadersOnly);
        Assert.Empty(smallest.Value);
        Assert.Equal("3f2504e0-4f89-11d3-9a0c-0305e82c3301", Encoding.UTF8.GetString(smallest.Key));
        Assert.Equal(["id", "error"], smallest.Headers.Select(h => h.Key));
    }

    [Fact]
    public void A_dead_letter_of_a_dead_letter_keeps_the_first_error()
    {
        var unroutable = Mapper.Map(Row(r => r.AggregateType = "no spaces allowed"), Transaction).DeadLetter!;
        var error = Mapper.DeadLetterError(unroutable)!;
        Assert.Contains("does not make a valid Kafka topic name", error);
        var reduced = Mapper.DeadLetter(unroutable, error + "; smaller", DeadLetterForm.WithoutPayload);
        Assert.StartsWith(error, Header(reduced.Headers, "error"));
        Assert.True(OutboxEvent.Parser.ParseFrom(reduced.Value).Payload.IsEmpty);
        Assert.Null(Mapper.DeadLetterError(Mapper.Map(Row(), Transaction).Record!));
    }

    [Fact]
    public void A_row_with_a_column_that_could_not_be_read_is_dead_lettered_with_the_reason()
    {
        var result = Mapper.Map(Row(r => r.ReadError = "column CreatedAt could not be read: created_at is infinity"), Transaction);
        AssertDeadLetter(result, "created_at is infinity");
        Assert.Equal("unreadable", result.DeadLetterReason);

        var noId = Mapper.Map(Row(r => { r.Id = ""; r.ReadError = "column Id could not be read: expected 16 bytes, got 3"; }), Transaction);
        Assert.Equal($"lsn:{Transaction.CommitLsn:X}", Header(noId.DeadLetter!.Headers, "id"));
    }

    static void AssertDeadLetter(MappingResult result, string reason)
    {
        Assert.Null(result.Record);
        var deadLetter = Assert.IsType<OutboxRecord>(result.DeadLetter);
        Assert.Equal("outbox.dlq", deadLetter.Topic);
        Assert.Equal("3f2504e0-4f89-11d3-9a0c-0305e82c3301", Encoding.UTF8.GetString(deadLetter.Key));
        Assert.Equal("3f2504e0-4f89-11d3-9a0c-0305e82c3301", Header(deadLetter.Headers, "id"));
        Assert.Contains(reason, Header(deadLetter.Headers, "error"));
        Assert.Equal("OrderPlaced", OutboxEvent.Parser.ParseFrom(deadLetter.Value).EventType);
    }
}
