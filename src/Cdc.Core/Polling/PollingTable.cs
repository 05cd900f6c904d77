using Cdc.Configuration;
using Cdc.Replication;
using Cdc.Table;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;

namespace Cdc.Polling;

/// <summary>
/// Checks before polling: the outbox table and its columns (as the replication mode checks them), and the privileges
/// the polling relay needs. No slot, publication, REPLICATION attribute or <c>wal_level = logical</c>.
/// </summary>
static class PollingTable
{
    // Tables already warned about in this process: a session reopened after a failure does not say it again.
    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> WarnedWithoutIndex = new(StringComparer.Ordinal);

    /// <summary>Checks the table and the role; returns the reader of its rows. Problems no retry fixes throw with what to change.</summary>
    public static async Task<OutboxTableReader> PrepareAsync(PostgresOptions options, ILogger logger, CancellationToken ct,
        IReadOnlyList<Mapping.Placement> placements)
    {
        await using var connection = new NpgsqlConnection(options.ConnectionString);
        await connection.OpenAsync(ct);
        var name = options.OutboxTable ?? throw new CdcConfigurationException("Cdc:Postgres:Table", "is empty, but polling needs a table");
        var table = await OutboxSlot.FindTableAsync(connection, name, ct);
        await OutboxSlot.CheckColumnsAsync(connection, table, options.Columns, placements, ct);
        await CheckPrivilegesAsync(connection, table, ct);
        await WarnWithoutOrderIndexAsync(connection, table, options.Columns, logger, ct);
        return await OutboxTableReader.CreateAsync(connection, table, options.Columns, ct, placements);
    }

    static async Task CheckPrivilegesAsync(NpgsqlConnection connection, OutboxTable table, CancellationToken ct)
    {
        // SELECT … FOR UPDATE needs UPDATE on some column besides SELECT (PostgreSQL's rule for locking clauses).
        await using var command = new NpgsqlCommand(
            """
            SELECT current_user, has_table_privilege($1, 'SELECT'), has_any_column_privilege($1, 'UPDATE'), has_table_privilege($1, 'DELETE')
            """, connection);
        command.Parameters.AddWithValue(NpgsqlDbType.Oid, table.Oid);
        await using var reader = await command.ExecuteReaderAsync(ct);
        await reader.ReadAsync(ct);
        var role = reader.GetString(0);
        var lacking = new List<string>();
        if (!reader.GetBoolean(1))
            lacking.Add("SELECT");
        if (!reader.GetBoolean(2))
            lacking.Add("UPDATE");
        if (!reader.GetBoolean(3))
            lacking.Add("DELETE");
        if (lacking.Count == 0)
            return;
        throw new CdcStartupException(
            $"The role {role} of Cdc:Postgres:ConnectionString lacks {string.Join(" and ", lacking)} on {table.Name}, which " +
            "Cdc:Postgres:Mode=Polling needs: it reads each batch with SELECT … FOR UPDATE SKIP LOCKED (UPDATE is what PostgreSQL " +
            "requires of a locking read) and deletes the batch once Kafka acknowledged it. Run: " +
            $"GRANT SELECT, UPDATE, DELETE ON {table.Name.Quoted} TO \"{role.Replace("\"", "\"\"")}\"");
    }

    /// <summary>Without an index leading with (created_at, id), every poll sorts the whole table: said once, at start.</summary>
    static async Task WarnWithoutOrderIndexAsync(NpgsqlConnection connection, OutboxTable table, OutboxColumns names, ILogger logger, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT EXISTS (
              SELECT 1 FROM pg_index i
              WHERE i.indrelid = $1 AND i.indnkeyatts >= 2
                AND i.indkey[0] = (SELECT attnum FROM pg_attribute WHERE attrelid = $1 AND attname = $2)
                AND i.indkey[1] = (SELECT attnum FROM pg_attribute WHERE attrelid = $1 AND attname = $3))
            """, connection);
        command.Parameters.AddWithValue(NpgsqlDbType.Oid, table.Oid);
        command.Parameters.AddWithValue(names.CreatedAt);
        command.Parameters.AddWithValue(names.Id);
        if (await command.ExecuteScalarAsync(ct) is true || !WarnedWithoutIndex.TryAdd($"{connection.Host}:{connection.Port}/{connection.Database}/{table.Oid}", 0))
            return;
        logger.LogWarning(
            "Table {Table} has no index on ({CreatedAt}, {Id}): every poll sorts the whole table, which is slow once rows pile up. " +
            "Create one: CREATE INDEX ON {Quoted} ({QuotedCreatedAt}, {QuotedId})",
            table.Name, names.CreatedAt, names.Id, table.Name.Quoted, SqlIdentifier.Quote(names.CreatedAt), SqlIdentifier.Quote(names.Id));
    }
}
