using Npgsql.Replication;
using NpgsqlTypes;

namespace Cdc.Positions;

/// <summary>
/// Sends the slot its confirmed position: only forward (PostgreSQL 15 accepts a lower position and would move the
/// slot back, resending what was already relayed, or worse, what a checkpoint says was confirmed), one update at a time
/// (the periodic confirm and the final one at shutdown share one connection), starting from the slot's own
/// confirmed position.
/// </summary>
public sealed class SlotConfirmer(Func<ulong, CancellationToken, Task> send, ulong slotConfirmedLsn)
{
    readonly SemaphoreSlim _one = new(1, 1);
    ulong _confirmed = slotConfirmedLsn;

    /// <summary>For a replication connection: sets the flushed/applied position and sends a status update.</summary>
    public static SlotConfirmer For(LogicalReplicationConnection connection, ulong slotConfirmedLsn) =>
        new(async (lsn, ct) =>
        {
            connection.SetReplicationStatus(new NpgsqlLogSequenceNumber(lsn));
            await connection.SendStatusUpdate(ct);
        }, slotConfirmedLsn);

    /// <summary>The highest position confirmed so far (the slot's own when this session has confirmed nothing).</summary>
    public ulong Confirmed => Volatile.Read(ref _confirmed);

    /// <summary>Whether this confirmer moved the slot past where it started.</summary>
    public bool Advanced { get; private set; }

    /// <summary>Confirms <paramref name="lsn"/> when it is past the confirmed position; returns whether it was sent.</summary>
    public async Task<bool> ConfirmAsync(ulong lsn, CancellationToken ct)
    {
        if (lsn <= Confirmed)
            return false;
        await _one.WaitAsync(ct);
        try
        {
            if (lsn <= _confirmed)
                return false;
            await send(lsn, ct);
            Volatile.Write(ref _confirmed, lsn);
            Advanced = true;
            return true;
        }
        finally
        {
            _one.Release();
        }
    }
}
