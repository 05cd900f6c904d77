using System.Text;
using System.Text.Json.Nodes;
using Cdc.Outbox.V1;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>The connector against a real PostgreSQL and a Kafka-protocol broker over TCP, in-process.</summary>
public class EndToEndTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Transactions_arrive_complete_once_in_per_aggregate_commit_order_with_the_contract_fields()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order", "customer"]);
        await outbox.StartRelayAsync();

        // 30 transactions of 4 rows over 6 aggregates of two types, the headers carrying a trace and a non-string value.
        var written = new List<TestEvent>();
        ulong lastCommit = 0;
        for (var t = 0; t < 30; t++)
        {
            var events = Enumerable.Range(0, 4).Select(i =>
            {
                var type = (t + i) % 2 == 0 ? "order" : "customer";
                return new TestEvent(type, $"{type}-{(t * 4 + i) % 3}", $"Event{t}_{i}", $$"""{"t":{{t}},"i":{{i}}}""",
                    $$"""{"traceparent":"00-{{t:x32}}-{{i:x16}}-01","seq":{{t * 4 + i}}}""");
            }).ToArray();
            written.AddRange(events);
            lastCommit = await outbox.CommitAsync(events);
        }

        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);
        var records = outbox.ReadTopic(outbox.Topic("order")).Concat(outbox.ReadTopic(outbox.Topic("customer"))).ToList();

        Assert.Equal(written.Count, records.Count);
        var byId = records.ToDictionary(r => Header(r, "id"));
        foreach (var e in written)
        {
            var record = byId[e.Id.ToString()];
            Assert.Equal(outbox.Topic(e.AggregateType!), record.Topic);
            Assert.Equal(e.AggregateId, Encoding.UTF8.GetString(record.Message.Key));
            Assert.Equal(e.EventType, Header(record, "event_type"));
            var evt = OutboxEvent.Parser.ParseFrom(record.Message.Value);
            Assert.Equal(e.Id.ToString(), evt.Id);
            Assert.Equal(e.AggregateType, evt.AggregateType);
            Assert.Equal(e.AggregateId, evt.AggregateId);
            Assert.Equal(e.EventType, evt.EventType);
            AssertSameJson(e.Payload, evt.Payload.ToStringUtf8());
            Assert.Equal("application/json", evt.PayloadContentType);
            Assert.True(evt.CreatedAt.ToDateTime() > DateTime.UtcNow.AddMinutes(-5));
            Assert.NotEqual(0UL, evt.Source.CommitLsn);
            Assert.NotEqual(0U, evt.Source.TransactionId);
            Assert.True(evt.Source.CommitTime.ToDateTime() >= evt.CreatedAt.ToDateTime());
            Assert.StartsWith("00-", evt.Headers["traceparent"]);
            // Same trace; the span id is the connector's own when a tracer listens (see TracingTests).
            Assert.StartsWith(evt.Headers["traceparent"][..36], Header(record, "traceparent"));
            Assert.Equal(evt.Headers["seq"], Header(record, "seq"));
        }

        // Per aggregate (key), the partition holds the events in the order they were written (commit order).
        foreach (var aggregate in written.GroupBy(e => (e.AggregateType, e.AggregateId)))
        {
            var ids = aggregate.Select(e => e.Id.ToString()).ToList();
            var delivered = records.Where(r => ids.Contains(Header(r, "id"))).ToList();
            Assert.Single(delivered.Select(r => r.Partition.Value).Distinct());
            Assert.Equal(ids, delivered.OrderBy(r => r.Offset.Value).Select(r => Header(r, "id")));
        }

        // Transactions are in commit order too: their commit LSNs never go down along a partition.
        foreach (var partition in records.GroupBy(r => r.TopicPartition))
        {
            var lsns = partition.OrderBy(r => r.Offset.Value).Select(r => OutboxEvent.Parser.ParseFrom(r.Message.Value).Source.CommitLsn).ToList();
            Assert.Equal(lsns.Order(), lsns);
        }
    }

    [Fact]
    public async Task Rolled_back_rows_and_updates_publish_nothing_and_insert_then_delete_publishes()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        await outbox.StartRelayAsync();

        var kept = new TestEvent("order", "o-1", "OrderPlaced", """{"n":1}""");
        await outbox.CommitAsync(kept);
        var rolledBack = new TestEvent("order", "o-1", "RolledBack");
        await outbox.WriteAsync([rolledBack], commit: false);
        var deleted = new TestEvent("order", "o-1", "InsertedThenDeleted", """{"n":2}""");
        await outbox.WriteAsync([deleted], commit: true, extraSql: $"DELETE FROM {outbox.Options.Postgres.Table} WHERE id = '{deleted.Id}'");
        await outbox.WriteAsync([], commit: true, extraSql: $"UPDATE {outbox.Options.Postgres.Table} SET event_type = 'Updated'");
        var last = new TestEvent("order", "o-1", "Last");
        var lastCommit = await outbox.CommitAsync(last);

        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);

        var records = outbox.ReadTopic(outbox.Topic("order"));
        Assert.Equal(["OrderPlaced", "InsertedThenDeleted", "Last"], records.OrderBy(r => r.Offset.Value).Select(r => Header(r, "event_type")));
        Assert.Equal([kept.Id, deleted.Id, last.Id], records.OrderBy(r => r.Offset.Value).Select(r => Guid.Parse(Header(r, "id"))));
    }

    [Fact]
    public async Task Bytea_payloads_travel_as_their_bytes_and_large_json_payloads_whole()
    {
        var servers = await fixture.GetAsync();
        await using var bytes = await OutboxHarness.CreateAsync(servers, output, ["blob"], payloadType: "bytea");
        await using var json = await OutboxHarness.CreateAsync(servers, output, ["doc"]);
        await bytes.StartRelayAsync();
        await json.StartRelayAsync();

        var payload = Enumerable.Range(0, 1000).Select(i => (byte)(i * 7)).ToArray();
        var blob = new TestEvent("blob", "b-1", "Blob", Convert.ToBase64String(payload), """{"content-type":"application/x-protobuf"}""");
        var plain = new TestEvent("blob", "b-2", "Plain", Convert.ToBase64String([0, 255, 1]));
        var bytesCommit = await bytes.CommitAsync(blob, plain);

        var large = "{\"data\":\"" + new string('x', 600 * 1024) + "\"}";
        var doc = new TestEvent("doc", "d-1", "Large", large);
        var jsonCommit = await json.CommitAsync(doc);

        await bytes.WaitForConfirmedAsync(bytesCommit, Timeout);
        await json.WaitForConfirmedAsync(jsonCommit, Timeout);

        var blobs = bytes.ReadTopic(bytes.Topic("blob")).ToDictionary(r => Header(r, "id"), r => OutboxEvent.Parser.ParseFrom(r.Message.Value));
        Assert.Equal(payload, blobs[blob.Id.ToString()].Payload.ToByteArray());
        Assert.Equal("application/x-protobuf", blobs[blob.Id.ToString()].PayloadContentType);
        Assert.Equal(new byte[] { 0, 255, 1 }, blobs[plain.Id.ToString()].Payload.ToByteArray());
        Assert.Equal("application/octet-stream", blobs[plain.Id.ToString()].PayloadContentType);

        var docRecord = Assert.Single(json.ReadTopic(json.Topic("doc")));
        var docEvent = OutboxEvent.Parser.ParseFrom(docRecord.Message.Value);
        Assert.True(docEvent.Payload.Length > 600 * 1024);
        AssertSameJson(large, docEvent.Payload.ToStringUtf8());
    }

    [Fact]
    public async Task Rows_that_cannot_be_published_go_to_the_dead_letter_topic_and_the_stream_moves_on()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"], aggregateTypeNullable: true);
        await outbox.StartRelayAsync();

        var nullType = new TestEvent(null, "x-1", "NoType");
        var badType = new TestEvent("has space", "x-2", "BadType");
        var badHeaders = new TestEvent("order", "x-3", "BadHeaders", "{}", """["not","an","object"]""");
        var good = new TestEvent("order", "o-1", "Good");
        var commit = await outbox.CommitAsync(nullType, badType, badHeaders, good);

        await outbox.WaitForConfirmedAsync(commit, Timeout);
        Assert.Equal([good.Id.ToString()], outbox.ReadTopic(outbox.Topic("order")).Select(r => Header(r, "id")));

        var dead = outbox.ReadTopic(outbox.DeadLetterTopic).ToDictionary(r => Header(r, "id"));
        Assert.Equal(3, dead.Count);
        Assert.Contains("aggregate_type is NULL", Header(dead[nullType.Id.ToString()], "error"));
        Assert.Contains("valid Kafka topic name", Header(dead[badType.Id.ToString()], "error"));
        Assert.Contains("not an object", Header(dead[badHeaders.Id.ToString()], "error"));
        foreach (var (id, record) in dead)
        {
            Assert.Equal(id, Encoding.UTF8.GetString(record.Message.Key));
            Assert.Equal(id, OutboxEvent.Parser.ParseFrom(record.Message.Value).Id);
        }
    }

    [Fact]
    public async Task While_only_other_tables_are_written_the_slot_keeps_up_with_the_server()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        await outbox.StartRelayAsync();

        for (var i = 0; i < 20; i++)
            await outbox.ExecuteAsync($"INSERT INTO public.{outbox.Name}_business (note) VALUES ('{new string('n', 2000)}')");
        var wal = await outbox.CurrentWalLsnAsync();
        await outbox.WaitForConfirmedAsync(wal, Timeout);
    }

    /// <summary>jsonb keeps the document, not its text (key order and spacing are normalized).</summary>
    static void AssertSameJson(string expected, string actual) =>
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), JsonNode.Parse(actual)), $"expected {expected}, got {actual}");

    static string Header(ConsumeResult<byte[], byte[]> record, string name) => DeliveryAssert.Header(record, name);
}
