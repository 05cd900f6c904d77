using Cdc.Configuration;
using Npgsql;

namespace Cdc.Relay;

/// <summary>
/// A replica's claim on its slot for a whole session: a session-level advisory lock keyed by the slot's name, on a
/// connection of its own, taken before the slot is looked at. The server lets one reader stream a slot, but a table read
/// (the initial snapshot, a backfill) comes before START_REPLICATION, with the slot inactive: without the claim a second
/// replica would find the slot free, relay the read again and take the slot (with exactly-once delivery it would also
/// register the transactional id and fence the leader). The lock goes when the connection does, as the slot does.
/// </summary>
sealed class SlotClaim : IAsyncDisposable
{
    // Two int4 keys: pg_locks shows them as classid and objid, with objsubid 2.
    const string Keys = "hashtext('cdc.slot'), hashtext($1)";

    /// <summary>SQL that is true while some session holds the claim on slot <c>$1</c> (for a standby's watch).</summary>
    public const string HeldSql =
        "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 " +
        "AND classid = hashtext('cdc.slot')::oid AND objid = hashtext($1)::oid)";

    readonly NpgsqlConnection _connection;

    SlotClaim(NpgsqlConnection connection) => _connection = connection;

    /// <summary>Takes the claim, or throws <see cref="PostgresException"/> ObjectInUse (as START_REPLICATION would) when another replica holds it.</summary>
    public static async Task<SlotClaim> TakeAsync(PostgresOptions options, CancellationToken ct)
    {
        // Not pooled: a session-level lock stays with a pooled connection after it is closed, and the next session of this
        // very process would find its slot claimed.
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(options.ConnectionString) { Pooling = false }.ConnectionString);
        try
        {
            await connection.OpenAsync(ct);
            await using var command = new NpgsqlCommand($"SELECT pg_try_advisory_lock({Keys})", connection);
            command.Parameters.AddWithValue(options.Slot);
            if (await command.ExecuteScalarAsync(ct) is true)
                return new SlotClaim(connection);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
        await connection.DisposeAsync();
        throw new PostgresException($"replication slot \"{options.Slot}\" is claimed by another replica (it is reading the outbox table or streaming the slot)",
            "ERROR", "ERROR", PostgresErrorCodes.ObjectInUse);
    }

    public ValueTask DisposeAsync() => _connection.DisposeAsync();
}
