using Cdc.Configuration;
using Microsoft.Extensions.Logging;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using NpgsqlTypes;

namespace Cdc.Replication;

/// <summary>Events a recreated slot skipped: committed after <see cref="From"/> and before <see cref="To"/>.</summary>
public readonly record struct SlotGap(NpgsqlTypes.NpgsqlLogSequenceNumber From, NpgsqlTypes.NpgsqlLogSequenceNumber To);

/// <summary>A problem on the database side that no retry fixes (wal_level, missing table, privileges).</summary>
public sealed class CdcStartupException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Prepares the server side before streaming: checks <c>wal_level</c>, the role and the outbox table's columns, and
/// creates the publication and the slot when they are missing.
/// </summary>
public static class OutboxSlot
{
    static readonly HashSet<string> TextTypes = ["text", "character varying", "character", "name"];

    /// <summary>Checks and creates what streaming needs; returns the gap when a lost slot was recreated.</summary>
    public static async Task<SlotGap?> PrepareAsync(PostgresOptions options, ILogger logger, CancellationToken ct)
    {
        var table = options.OutboxTable;
        await using var connection = new NpgsqlConnection(options.ConnectionString);
        await connection.OpenAsync(ct);

        var walLevel = (string?)await Scalar(connection, "SHOW wal_level", ct);
        if (walLevel != "logical")
            throw new CdcStartupException(
                $"The server's wal_level is '{walLevel}'; logical replication needs wal_level = logical " +
                "(ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL).");

        var canReplicate = (bool?)await Scalar(connection,
            "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user", ct);
        if (canReplicate != true)
            throw new CdcStartupException(
                "The role in Cdc:Postgres:ConnectionString lacks the REPLICATION attribute (ALTER ROLE <role> REPLICATION).");

        if (table is { } outbox)
            await CheckColumnsAsync(connection, outbox, options.Columns, ct);
        await EnsurePublicationAsync(connection, options.Publication, table, logger, ct);
        return await EnsureSlotAsync(connection, options, logger, ct);
    }

    static async Task CheckColumnsAsync(NpgsqlConnection connection, TableName table, OutboxColumns names, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT a.attname, format_type(a.atttypid, NULL)
            FROM pg_attribute a
            WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
            """, connection);
        command.Parameters.AddWithValue(table.Quoted);
        var columns = new Dictionary<string, string>(StringComparer.Ordinal);
        await using (var reader = await command.ExecuteReaderAsync(ct))
            while (await reader.ReadAsync(ct))
                columns[reader.GetString(0)] = reader.GetString(1);

        if (columns.Count == 0)
            throw new CdcConfigurationException("Cdc:Postgres:Table", $"table {table} does not exist (or the role cannot see it)");

        Expect("Id", names.Id, ["uuid", .. TextTypes]);
        Expect("AggregateType", names.AggregateType, TextTypes);
        Expect("AggregateId", names.AggregateId, TextTypes);
        Expect("EventType", names.EventType, TextTypes);
        Expect("Payload", names.Payload, ["jsonb", "json", "bytea"]);
        Expect("Headers", names.Headers, ["jsonb", "json"]);
        Expect("CreatedAt", names.CreatedAt, ["timestamp with time zone", "timestamp without time zone"]);

        void Expect(string option, string column, IReadOnlyCollection<string> types)
        {
            var key = $"Cdc:Postgres:Columns:{option}";
            if (!columns.TryGetValue(column, out var type))
                throw new CdcConfigurationException(key, $"table {table} has no column '{column}'");
            if (!types.Contains(type))
                throw new CdcConfigurationException(key, $"column {table}.{column} is {type}; expected {string.Join(" or ", types)}");
        }
    }

    static async Task EnsurePublicationAsync(
        NpgsqlConnection connection, string publication, TableName? table, ILogger logger, CancellationToken ct)
    {
        await using var find = new NpgsqlCommand(
            """
            SELECT p.pubinsert,
                   EXISTS (SELECT 1 FROM pg_publication_tables t
                           WHERE t.pubname = p.pubname AND t.schemaname = $2 AND t.tablename = $3)
            FROM pg_publication p WHERE p.pubname = $1
            """, connection);
        find.Parameters.AddWithValue(publication);
        find.Parameters.AddWithValue(table?.Schema ?? "");
        find.Parameters.AddWithValue(table?.Name ?? "");
        await using (var reader = await find.ExecuteReaderAsync(ct))
        {
            if (await reader.ReadAsync(ct))
            {
                if (!reader.GetBoolean(0))
                    throw new CdcConfigurationException("Cdc:Postgres:Publication", $"publication {publication} does not publish inserts");
                if (table is not null && !reader.GetBoolean(1))
                    throw new CdcConfigurationException("Cdc:Postgres:Publication",
                        $"publication {publication} exists but does not include table {table}");
                return;
            }
        }

        try
        {
            // Table-less mode still needs a publication to stream from; an empty one publishes only messages.
            var forTable = table is null ? "" : $"FOR TABLE {table.Value.Quoted} ";
            await using var create = new NpgsqlCommand(
                $"CREATE PUBLICATION \"{publication}\" {forTable}WITH (publish = 'insert')", connection);
            await create.ExecuteNonQueryAsync(ct);
            logger.LogInformation("Created publication {Publication} for {Table} (inserts only)", publication,
                table?.ToString() ?? "no table (messages only)");
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DuplicateObject)
        {
            // Another replica created it at the same moment.
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege)
        {
            throw new CdcConfigurationException("Cdc:Postgres:Publication",
                $"publication {publication} does not exist and this role may not create it ({e.MessageText}); have the table's " +
                $"owner run: CREATE PUBLICATION \"{publication}\" FOR TABLE {table?.Quoted} WITH (publish = 'insert')", e);
        }
    }

    static async Task<SlotGap?> EnsureSlotAsync(NpgsqlConnection connection, PostgresOptions options, ILogger logger, CancellationToken ct)
    {
        await using var find = new NpgsqlCommand(
            "SELECT plugin, database, wal_status, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", connection);
        find.Parameters.AddWithValue(options.Slot);
        NpgsqlLogSequenceNumber? lostAt = null;
        await using (var reader = await find.ExecuteReaderAsync(ct))
        {
            if (await reader.ReadAsync(ct))
            {
                var plugin = reader.IsDBNull(0) ? "(physical)" : reader.GetString(0);
                if (plugin != "pgoutput")
                    throw new CdcConfigurationException("Cdc:Postgres:Slot", $"slot {options.Slot} uses plugin {plugin}, not pgoutput");
                if (reader.GetString(1) != connection.Database)
                    throw new CdcConfigurationException("Cdc:Postgres:Slot",
                        $"slot {options.Slot} belongs to database {reader.GetString(1)}, not {connection.Database}");
                if (reader.IsDBNull(2) || reader.GetString(2) != "lost")
                    return null;
                lostAt = reader.IsDBNull(3) ? default : reader.GetFieldValue<NpgsqlLogSequenceNumber>(3);
            }
        }

        if (lostAt is { } from)
        {
            if (options.LostSlotPolicy == LostSlotPolicy.Stop)
                throw new CdcStartupException(
                    $"Slot {options.Slot} is invalidated (wal_status = 'lost'): it fell behind max_slot_wal_keep_size and the " +
                    $"server removed WAL it still needed, so events committed after {from} cannot be read from it. " +
                    "Set Cdc:Postgres:LostSlotPolicy=Recreate to recreate the slot and log the gap to backfill, or drop it yourself.");
            await using var drop = new NpgsqlCommand("SELECT pg_drop_replication_slot($1)", connection);
            drop.Parameters.AddWithValue(options.Slot);
            await drop.ExecuteNonQueryAsync(ct);
        }

        var created = await CreateSlotAsync(options, logger, ct);
        if (lostAt is not { } gapStart)
            return null;
        var gap = new SlotGap(gapStart, created ?? default);
        logger.LogError(
            "Slot {Slot} was invalidated (wal_status = 'lost') and has been recreated. Events committed after {FromLsn} and " +
            "before {ToLsn} were NOT relayed: backfill them (e.g. re-publish outbox rows committed in that interval)",
            options.Slot, gap.From, gap.To);
        return gap;
    }

    /// <summary>Creates the slot; returns its consistent point, or null when another replica created it first.</summary>
    static async Task<NpgsqlLogSequenceNumber?> CreateSlotAsync(PostgresOptions options, ILogger logger, CancellationToken ct)
    {
        await using var replication = new LogicalReplicationConnection(options.ConnectionString);
        await replication.Open(ct);
        try
        {
            var slot = await replication.CreatePgOutputReplicationSlot(
                options.Slot, slotSnapshotInitMode: LogicalSlotSnapshotInitMode.NoExport, cancellationToken: ct);
            logger.LogInformation("Created replication slot {Slot} (pgoutput) at {Lsn}", slot.Name, slot.ConsistentPoint);
            return slot.ConsistentPoint;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DuplicateObject)
        {
            // Another replica created it at the same moment.
            return null;
        }
    }

    static async Task<object?> Scalar(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync(ct);
    }
}
