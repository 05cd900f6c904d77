using System.Text;
using Cdc.Outbox.V1;
using Cdc.Tests.Fixtures;
using Google.Protobuf;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>Events emitted with pg_logical_emit_message go through the same mapping, ordering and acknowledgement path as rows.</summary>
public class TablelessModeTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>Messages are database-wide: a prefix of this class's own keeps other tests' connectors from relaying them.</summary>
    static readonly string Prefix = $"test.{Guid.NewGuid():N}";

    static OutboxEvent Event(string aggregateType, string aggregateId, string eventType) => new()
    {
        Id = Guid.NewGuid().ToString(),
        AggregateType = aggregateType,
        AggregateId = aggregateId,
        EventType = eventType,
        Payload = ByteString.CopyFromUtf8("""{"emitted":true}"""),
        PayloadContentType = "application/json",
        Headers = { ["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
    };

    static async Task<ulong> EmitAsync(OutboxHarness outbox, bool commit, params (bool Transactional, string Prefix, byte[] Content)[] messages)
    {
        await using var connection = new NpgsqlConnection(outbox.ConnectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        foreach (var (transactional, prefix, content) in messages)
        {
            await using var emit = new NpgsqlCommand("SELECT pg_logical_emit_message($1, $2, $3)", connection, tx);
            emit.Parameters.AddWithValue(transactional);
            emit.Parameters.AddWithValue(prefix);
            emit.Parameters.AddWithValue(content);
            await emit.ExecuteScalarAsync();
        }
        if (commit)
            await tx.CommitAsync();
        else
            await tx.RollbackAsync();
        return await outbox.CurrentWalLsnAsync();
    }

    [Fact]
    public async Task Emitted_events_are_relayed_and_rolled_back_non_transactional_or_foreign_ones_are_not()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"], configure: o =>
        {
            o.Postgres.Table = "";
            o.Postgres.MessagePrefix = Prefix;
        });
        await outbox.StartRelayAsync();

        var first = Event("order", "o-1", "OrderPlaced");
        var second = Event("order", "o-1", "OrderPaid");
        await EmitAsync(outbox, commit: true, (true, Prefix, first.ToByteArray()), (true, Prefix, second.ToByteArray()));
        await EmitAsync(outbox, commit: false, (true, Prefix, Event("order", "o-1", "RolledBack").ToByteArray()));
        await EmitAsync(outbox, commit: true, (false, Prefix, Event("order", "o-1", "NotTransactional").ToByteArray()));
        await EmitAsync(outbox, commit: true, (true, "someone.else", Event("order", "o-1", "OtherPrefix").ToByteArray()));
        var lastCommit = await EmitAsync(outbox, commit: true, (true, Prefix, [0xFF, 0xFF, 0xFF]));

        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);
        var records = outbox.ReadTopic(outbox.Topic("order")).OrderBy(r => r.Offset.Value).ToList();
        Assert.Equal([first.Id, second.Id], records.Select(r => Encoding.UTF8.GetString(r.Message.Headers.GetLastBytes("id"))));

        var delivered = OutboxEvent.Parser.ParseFrom(records[0].Message.Value);
        Assert.Equal("o-1", Encoding.UTF8.GetString(records[0].Message.Key));
        Assert.Equal("OrderPlaced", Encoding.UTF8.GetString(records[0].Message.Headers.GetLastBytes("event_type")));
        Assert.Equal("""{"emitted":true}""", delivered.Payload.ToStringUtf8());
        Assert.NotEqual(0UL, delivered.Source.CommitLsn);
        Assert.NotEqual(0U, delivered.Source.TransactionId);
        Assert.StartsWith("00-4bf92f3577b34da6a3ce929d0e0e4736-", Encoding.UTF8.GetString(records[0].Message.Headers.GetLastBytes("traceparent")));

        var dead = Assert.Single(outbox.ReadTopic(outbox.DeadLetterTopic));
        Assert.Contains("not a cdc.outbox.v1.OutboxEvent", Encoding.UTF8.GetString(dead.Message.Headers.GetLastBytes("error")));
    }

    [Fact]
    public async Task Rows_and_emitted_events_of_one_transaction_keep_their_order()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"], configure: o => o.Postgres.MessagePrefix = Prefix);
        await outbox.StartRelayAsync();

        var row = new TestEvent("order", "o-1", "FromRow");
        var emitted = Event("order", "o-1", "Emitted");
        var lastCommit = await outbox.WriteAsync([row], commit: true,
            extraSql: $"SELECT pg_logical_emit_message(true, '{Prefix}', '\\x{Convert.ToHexString(emitted.ToByteArray())}'::bytea)");

        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);
        var records = outbox.ReadTopic(outbox.Topic("order")).OrderBy(r => r.Offset.Value).ToList();
        Assert.Equal(["FromRow", "Emitted"], records.Select(r => Encoding.UTF8.GetString(r.Message.Headers.GetLastBytes("event_type"))));
    }
}
