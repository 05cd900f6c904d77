using Cdc.Consumer;
using Cdc.Outbox;
using Cdc.Outbox.V1;
using Npgsql;

namespace Cdc.Samples.OrderSaga;

/// <summary>
/// What the three services share: a schema of their own in which live their tables, their outbox (relayed by their
/// own connector) and their inbox; and a handler for the events they subscribe to, run by an
/// <see cref="OutboxConsumerService"/> once per event id.
/// </summary>
public abstract class SagaService
{
    protected SagaService(NpgsqlDataSource dataSource, string schema)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(schema);
        DataSource = dataSource;
        Schema = schema;
        Outbox = new OutboxWriter(new OutboxWriterOptions { Table = OutboxTable });
    }

    public NpgsqlDataSource DataSource { get; }
    public string Schema { get; }
    public string OutboxTable => $"{Schema}.outbox";
    public string InboxTable => $"{Schema}.inbox";
    protected OutboxWriter Outbox { get; }

    /// <summary>The topics this service consumes.</summary>
    public abstract IReadOnlyList<string> SubscribesTo(SagaTopics topics);

    /// <summary>Handles one event inside the inbox's transaction; events of types it does not care about are ignored.</summary>
    public abstract Task HandleAsync(OutboxEvent evt, NpgsqlTransaction tx, CancellationToken ct);

    /// <summary>Creates the schema with the service's tables, its outbox and its inbox (idempotent).</summary>
    public async Task CreateSchemaAsync(CancellationToken ct = default)
    {
        await using var command = DataSource.CreateCommand(
            $"CREATE SCHEMA IF NOT EXISTS \"{Schema}\";\n" +
            OutboxSchema.CreateTableSql(Outbox.Options) + "\n" +
            Inbox.CreateTableSql(InboxTable) + "\n" +
            TablesSql());
        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>The service's own tables, in <see cref="Schema"/>.</summary>
    protected abstract string TablesSql();

    /// <summary>Records an event of this service in its outbox, in the transaction of the change it describes.</summary>
    protected Task EmitAsync<T>(NpgsqlTransaction tx, string aggregateType, Guid orderId, T payload, CancellationToken ct) =>
        Outbox.AddAsync(tx, OutboxMessage.Json(aggregateType, orderId.ToString(), typeof(T).Name, payload), ct);

    protected static NpgsqlCommand Command(NpgsqlTransaction tx, string sql, params object[] parameters)
    {
        var command = new NpgsqlCommand(sql, tx.Connection, tx);
        foreach (var parameter in parameters)
            command.Parameters.AddWithValue(parameter);
        return command;
    }
}
