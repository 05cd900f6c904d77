using System.Text;
using Cdc.Contracts;
using Npgsql;
using NpgsqlTypes;

namespace Cdc.Outbox;

/// <summary>
/// Records events inside the service's own transaction, so they commit or roll back with its business change:
/// as rows of the outbox table (<see cref="AddAsync"/>, <see cref="AddRangeAsync"/>), or without a table as
/// logical-decoding messages (<see cref="EmitAsync"/>). Thread-safe and cheap to share: one per outbox table.
/// </summary>
public sealed class OutboxWriter
{
    readonly OutboxWriterOptions _options;
    readonly TimeProvider _clock;
    readonly TableName _table;
    readonly string _copyWithDefaultCreatedAt;
    readonly string _copyWithCreatedAt;
    readonly string _delete;

    public OutboxWriter(OutboxWriterOptions? options = null, TimeProvider? clock = null)
    {
        _options = options ?? new OutboxWriterOptions();
        _options.Validate();
        _clock = clock ?? TimeProvider.System;
        _table = _options.ParseTable();

        var c = _options.Columns;
        var columns = string.Join(", ", new[] { c.Id, c.AggregateType, c.AggregateId, c.EventType, c.Payload, c.Headers }.Select(SqlIdentifier.Quote));
        _copyWithDefaultCreatedAt = $"COPY {_table.Quoted} ({columns}) FROM STDIN (FORMAT BINARY)";
        _copyWithCreatedAt = $"COPY {_table.Quoted} ({columns}, {SqlIdentifier.Quote(c.CreatedAt)}) FROM STDIN (FORMAT BINARY)";
        _delete = $"DELETE FROM {_table.Quoted} WHERE {SqlIdentifier.Quote(c.Id)} = ANY($1)";
    }

    public OutboxWriterOptions Options => _options;

    /// <summary>Adds one event to the outbox table in <paramref name="transaction"/>.</summary>
    public Task AddAsync(NpgsqlTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default) =>
        AddRangeAsync(transaction, [message], cancellationToken);

    /// <summary>
    /// Adds the events to the outbox table in <paramref name="transaction"/> with one binary COPY, in the given
    /// order (which is the order the connector publishes them in, per aggregate).
    /// </summary>
    /// <exception cref="ArgumentException">
    /// A payload the payload column cannot hold (bytes into jsonb), or a header named <c>id</c> or <c>event_type</c>
    /// (the connector sets those itself). Checked before anything is written.
    /// </exception>
    /// <exception cref="InvalidOperationException">The transaction has already committed or rolled back.</exception>
    public async Task AddRangeAsync(NpgsqlTransaction transaction, IEnumerable<OutboxMessage> messages, CancellationToken cancellationToken = default)
    {
        var connection = OpenConnectionOf(transaction);
        ArgumentNullException.ThrowIfNull(messages);
        var batch = messages.ToList();
        if (batch.Count == 0)
            return;
        // Checked for the whole batch first: a refusal must not leave half a COPY in the caller's transaction.
        foreach (var message in batch)
            CheckFits(message);
        var bytea = _options.PayloadColumnType == PayloadColumnType.Bytea;
        // A bytea payload carries its content type in the headers: that is where the connector looks for it.
        var headers = batch.Select(m => OutboxHeaders.ToJson(OutboxHeaders.For(m, withContentType: bytea))).ToList();

        // created_at is left to the column default (the transaction's now(), like the business rows') unless a message
        // sets it; one COPY has one column list, so then the others get this process's clock.
        var anyCreatedAt = batch.Any(m => m.CreatedAt is not null);
        var now = _clock.GetUtcNow();

        await using (var copy = await connection.BeginBinaryImportAsync(anyCreatedAt ? _copyWithCreatedAt : _copyWithDefaultCreatedAt, cancellationToken))
        {
            for (var i = 0; i < batch.Count; i++)
            {
                var message = batch[i];
                await copy.StartRowAsync(cancellationToken);
                await copy.WriteAsync(message.Id, NpgsqlDbType.Uuid, cancellationToken);
                await copy.WriteAsync(message.AggregateType, NpgsqlDbType.Text, cancellationToken);
                await copy.WriteAsync(message.AggregateId, NpgsqlDbType.Text, cancellationToken);
                await copy.WriteAsync(message.EventType, NpgsqlDbType.Text, cancellationToken);
                if (bytea)
                    await copy.WriteAsync(message.Payload.Bytes.ToArray(), NpgsqlDbType.Bytea, cancellationToken);
                else
                    await copy.WriteAsync(Encoding.UTF8.GetString(message.Payload.Bytes.Span), NpgsqlDbType.Jsonb, cancellationToken);
                if (headers[i] is { } json)
                    await copy.WriteAsync(json, NpgsqlDbType.Jsonb, cancellationToken);
                else
                    await copy.WriteNullAsync(cancellationToken);
                if (anyCreatedAt)
                    await copy.WriteAsync((message.CreatedAt ?? now).ToUniversalTime(), NpgsqlDbType.TimestampTz, cancellationToken);
            }
            await copy.CompleteAsync(cancellationToken);
        }

        if (_options.DeleteAfterInsert)
        {
            await using var delete = new NpgsqlCommand(_delete, connection, transaction);
            delete.Parameters.Add(new NpgsqlParameter { Value = batch.Select(m => m.Id).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid });
            await delete.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    /// <summary>
    /// Table-less mode: writes the event into the WAL as a transactional logical-decoding message
    /// (<c>pg_logical_emit_message(true, MessagePrefix, OutboxEvent bytes)</c>). It is decoded only if
    /// <paramref name="transaction"/> commits, and nothing is stored in a table.
    /// </summary>
    public Task EmitAsync(NpgsqlTransaction transaction, OutboxMessage message, CancellationToken cancellationToken = default) =>
        EmitRangeAsync(transaction, [message], cancellationToken);

    /// <summary>Table-less mode for several events, in one round trip, decoded in this order.</summary>
    public async Task EmitRangeAsync(NpgsqlTransaction transaction, IEnumerable<OutboxMessage> messages, CancellationToken cancellationToken = default)
    {
        var connection = OpenConnectionOf(transaction);
        ArgumentNullException.ThrowIfNull(messages);
        var now = _clock.GetUtcNow();
        await using var batch = new NpgsqlBatch(connection, transaction);
        foreach (var message in messages)
        {
            ArgumentNullException.ThrowIfNull(message);
            var command = new NpgsqlBatchCommand("SELECT pg_logical_emit_message(true, $1, $2)");
            command.Parameters.Add(new NpgsqlParameter { Value = _options.MessagePrefix, NpgsqlDbType = NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = OutboxEventEncoder.Encode(message, now), NpgsqlDbType = NpgsqlDbType.Bytea });
            batch.BatchCommands.Add(command);
        }
        if (batch.BatchCommands.Count > 0)
            await batch.ExecuteNonQueryAsync(cancellationToken);
    }

    void CheckFits(OutboxMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (_options.PayloadColumnType == PayloadColumnType.Jsonb && !message.Payload.IsJson)
            throw new ArgumentException(
                $"Event {message.Id} ({message.EventType}) has a {message.Payload.ContentType} payload, but the payload column of " +
                $"{_table} is jsonb, which holds JSON only. Declare the column bytea and set OutboxWriterOptions.PayloadColumnType = " +
                "Bytea, or give the event a JSON payload.", nameof(message));
    }

    static NpgsqlConnection OpenConnectionOf(NpgsqlTransaction transaction)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        const string completed = "The transaction has already completed; outbox events must be written inside the open transaction of the change they describe.";
        try
        {
            // Npgsql keeps the connection on a completed transaction, where a COPY would run on its own, outside any
            // transaction; its IsolationLevel getter is the public check that throws once the transaction is over.
            _ = transaction.IsolationLevel;
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidOperationException(completed, e);
        }
        return transaction.Connection ?? throw new InvalidOperationException(completed);
    }
}
