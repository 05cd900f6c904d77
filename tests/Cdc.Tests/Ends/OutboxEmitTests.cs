using System.Text;
using Cdc.Outbox;
using Cdc.Outbox.V1;
using Cdc.Tests.Fixtures;
using Npgsql;

namespace Cdc.Tests.Ends;

/// <summary>
/// Table-less mode, writer side: <see cref="OutboxWriter.EmitAsync"/> puts a transactional logical-decoding message
/// in the WAL. Checked with PostgreSQL's own test_decoding plugin, which prints each message as
/// <c>message: transactional: 1 prefix: cdc.outbox, sz: N content:</c> followed by the N bytes.
/// </summary>
public class OutboxEmitTests(ServersFixture fixture) : IClassFixture<ServersFixture>
{
    [Fact]
    public async Task Emitted_events_are_decoded_only_from_committed_transactions_with_the_prefix_and_OutboxEvent_bytes()
    {
        var servers = await fixture.GetAsync();
        var slot = TestNames.Unique("emit");
        // A temporary slot lives as long as this session; it sees what is committed after its creation.
        await using var decoder = new NpgsqlConnection(servers.PostgresConnectionString);
        await decoder.OpenAsync();
        await using (var create = new NpgsqlCommand("SELECT pg_create_logical_replication_slot($1, 'test_decoding', true)", decoder))
        {
            create.Parameters.AddWithValue(slot);
            await create.ExecuteNonQueryAsync();
        }

        var writer = new OutboxWriter(); // table-less: no table is needed, only the prefix
        var customPrefix = new OutboxWriter(new OutboxWriterOptions { MessagePrefix = "billing.events" });
        var happened = new DateTimeOffset(2025, 3, 4, 5, 6, 7, TimeSpan.Zero);
        var committed = new OutboxMessage("order", "o-1", "OrderPlaced", OutboxPayload.Json(new { Total = 10 }))
        {
            CreatedAt = happened,
            Headers = { ["tenant"] = "acme" },
        };
        var rolledBack = OutboxMessage.Json("order", "o-2", "OrderPlaced", new { Total = 20 });
        var protobuf = new OutboxMessage("invoice", "i-1", "InvoiceIssued",
            OutboxPayload.FromBytes(new byte[] { 0, 1, 2, 255 }, "application/x-protobuf; messageType=billing.Invoice"));

        await EmitAsync(servers, writer, committed, commit: true);
        await EmitAsync(servers, writer, rolledBack, commit: false);
        await EmitAsync(servers, customPrefix, protobuf, commit: true);

        // Decoding reads only flushed WAL, and the test server commits with synchronous_commit off: wait for the WAL
        // writer to flush the last commit (everything before it then is flushed too).
        var messages = await PeekMessagesAsync(decoder, slot);
        for (var deadline = DateTime.UtcNow.AddSeconds(30); messages.All(m => m.Event.Id != protobuf.Id.ToString()) && DateTime.UtcNow < deadline;)
        {
            await Task.Delay(100);
            messages = await PeekMessagesAsync(decoder, slot);
        }
        // Other tests share the database: look only at our events.
        var ours = messages.Where(m => m.Event.Id == committed.Id.ToString() || m.Event.Id == rolledBack.Id.ToString() || m.Event.Id == protobuf.Id.ToString())
            .ToList();
        Assert.Equal(2, ours.Count);

        var first = ours[0];
        Assert.True(first.Transactional);
        Assert.Equal("cdc.outbox", first.Prefix);
        Assert.Equal(committed.Id.ToString(), first.Event.Id);
        Assert.Equal("order", first.Event.AggregateType);
        Assert.Equal("o-1", first.Event.AggregateId);
        Assert.Equal("OrderPlaced", first.Event.EventType);
        Assert.Equal("""{"total":10}""", first.Event.Payload.ToStringUtf8());
        Assert.Equal("application/json", first.Event.PayloadContentType);
        Assert.Equal(happened, first.Event.CreatedAt.ToDateTimeOffset());
        Assert.Equal("acme", first.Event.Headers["tenant"]);
        Assert.Null(first.Event.Source); // the connector fills it from the commit it decodes

        var second = ours[1];
        Assert.Equal("billing.events", second.Prefix);
        Assert.Equal(protobuf.Id.ToString(), second.Event.Id);
        Assert.Equal(new byte[] { 0, 1, 2, 255 }, second.Event.Payload.ToByteArray());
        Assert.Equal("application/x-protobuf; messageType=billing.Invoice", second.Event.PayloadContentType);
    }

    [Fact]
    public async Task Emitted_events_reach_Kafka_like_rows_once_the_connector_relays_messages()
    {
        var servers = await fixture.GetAsync();
        // Messages are database-wide: a prefix of this test's own keeps other tests' connectors out of it.
        var prefix = $"test.{Guid.NewGuid():N}";
        await using var harness = await OutboxHarness.CreateAsync(servers, new NullOutput(), ["order"],
            configure: o => o.Postgres.MessagePrefix = prefix);
        await harness.StartRelayAsync();
        var writer = new OutboxWriter(new OutboxWriterOptions { MessagePrefix = prefix });
        var message = OutboxMessage.Json("order", "o-9", "OrderPlaced", new { Total = 9 });
        await EmitAsync(servers, writer, message, commit: true);
        await EmitAsync(servers, writer, OutboxMessage.Json("order", "o-9", "OrderCancelled", new { }), commit: false);
        await harness.WaitForConfirmedAsync(await harness.CurrentWalLsnAsync(), TimeSpan.FromSeconds(60));

        var record = Assert.Single(harness.ReadTopic(harness.Topic("order")));
        Assert.Equal("o-9", Encoding.UTF8.GetString(record.Message.Key));
        Assert.Equal(message.Id.ToString(), Encoding.UTF8.GetString(record.Message.Headers.GetLastBytes("id")));
        Assert.Equal("OrderPlaced", Encoding.UTF8.GetString(record.Message.Headers.GetLastBytes("event_type")));
        var evt = OutboxEvent.Parser.ParseFrom(record.Message.Value);
        Assert.Equal(message.Id.ToString(), evt.Id);
        Assert.Equal("""{"total":9}""", evt.Payload.ToStringUtf8());
        Assert.NotEqual(0UL, evt.Source.CommitLsn);
    }

    static async Task EmitAsync(TestServers servers, OutboxWriter writer, OutboxMessage message, bool commit)
    {
        await using var connection = new NpgsqlConnection(servers.PostgresConnectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await writer.EmitAsync(tx, message);
        if (commit)
            await tx.CommitAsync();
        else
            await tx.RollbackAsync();
    }

    sealed record DecodedMessage(bool Transactional, string Prefix, OutboxEvent Event);

    /// <summary>The slot's messages in commit order, parsed from test_decoding's output.</summary>
    static async Task<List<DecodedMessage>> PeekMessagesAsync(NpgsqlConnection decoder, string slot)
    {
        var header = Encoding.ASCII.GetBytes("message: ");
        await using var peek = new NpgsqlCommand("SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL)", decoder);
        peek.Parameters.AddWithValue(slot);
        var result = new List<DecodedMessage>();
        await using var reader = await peek.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            var data = (byte[])reader[0];
            if (!data.AsSpan().StartsWith(header))
                continue; // BEGIN, COMMIT and other tests' table changes
            // "message: transactional: 1 prefix: cdc.outbox, sz: 42 content:" then the content bytes
            const string contentMarker = " content:";
            var at = data.AsSpan().IndexOf(Encoding.ASCII.GetBytes(contentMarker));
            var text = Encoding.ASCII.GetString(data, 0, at);
            var content = data.AsSpan(at + contentMarker.Length).ToArray();
            var transactional = text.Contains("transactional: 1");
            var prefix = text[(text.IndexOf("prefix: ", StringComparison.Ordinal) + 8)..text.LastIndexOf(", sz: ", StringComparison.Ordinal)];
            var size = int.Parse(text[(text.LastIndexOf("sz: ", StringComparison.Ordinal) + 4)..]);
            Assert.Equal(size, content.Length);
            if (prefix is "cdc.outbox" or "billing.events")
                result.Add(new DecodedMessage(transactional, prefix, OutboxEvent.Parser.ParseFrom(content)));
        }
        return result;
    }

    sealed class NullOutput : Xunit.Abstractions.ITestOutputHelper
    {
        public void WriteLine(string message) { }
        public void WriteLine(string format, params object[] args) { }
    }
}
