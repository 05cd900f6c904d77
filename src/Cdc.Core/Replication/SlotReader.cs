using System.Runtime.CompilerServices;
using Cdc.Configuration;
using Cdc.Mapping;
using Cdc.Replication.PgOutput;
using Npgsql.Replication;
using Npgsql.Replication.Internal;
using Npgsql.Replication.PgOutput;

namespace Cdc.Replication;

/// <summary>What the slot says, in the order it says it: a transaction's begin, its outbox rows and messages, its commit.</summary>
enum SlotChangeKind : byte
{
    Begin,
    Row,
    Message,
    /// <summary>A transactional message with the signal prefix: an instruction to this connector (e.g. re-publish rows).</summary>
    Signal,
    Commit,
}

/// <summary>
/// One change of the stream. <see cref="Transaction"/> is set on every change; <see cref="Row"/> on rows,
/// <see cref="Message"/> and <see cref="Lsn"/> (the message's position) on messages, <see cref="Lsn"/> (the end of the
/// commit record, the position to confirm) on commits.
/// </summary>
readonly record struct SlotChange(SlotChangeKind Kind, TransactionInfo Transaction, OutboxRow? Row = null, byte[]? Message = null, ulong Lsn = 0);

/// <summary>
/// Reads the slot with pgoutput (binary values, logical decoding messages on) and yields the outbox's changes:
/// inserts of the outbox table (or of its partitions) and transactional messages with the configured prefix, framed by
/// their transaction's begin and commit. Transactions without any are still yielded (begin, commit), so their commit
/// position can be confirmed.
/// Each XLogData message (one pgoutput message) is read whole into one reused buffer and parsed there, so a row costs
/// one read of the connection and no objects but the values it becomes (Npgsql's pgoutput messages read each column
/// through a stream of its own: most of the reading loop's CPU).
/// </summary>
sealed class SlotReader(LogicalReplicationConnection connection, PostgresOptions options, OutboxRelations? relations)
{
    /// <summary>Messages up to this size are read into the reused buffer; a larger one (a large row) gets its own array.</summary>
    const int BufferSize = 64 * 1024;

    public async IAsyncEnumerable<SlotChange> ReadAsync([EnumeratorCancellation] CancellationToken ct)
    {
        var slot = new PgOutputReplicationSlot(options.Slot);
        KeyValuePair<string, string?>[] pgOptions =
        [
            new("proto_version", "1"),
            new("publication_names", "\"" + options.Publication.Replace("\"", "\"\"", StringComparison.Ordinal) + "\""),
            new("binary", "on"),
            new("messages", "on"),
        ];
        var buffer = new byte[BufferSize];
        var inTransaction = false;
        var transaction = default(TransactionInfo);
        await foreach (var data in connection.StartLogicalReplication(slot, ct, options: pgOptions))
        {
            var length = checked((int)data.Data.Length);
            var bytes = length <= buffer.Length ? buffer : new byte[length];
            await data.Data.ReadExactlyAsync(bytes.AsMemory(0, length), ct);
            if (Parse(bytes.AsSpan(0, length), ref inTransaction, ref transaction) is { } change)
                yield return change;
        }
    }

    /// <summary>The change one pgoutput message makes, or null for a message the outbox does not need.</summary>
    SlotChange? Parse(ReadOnlySpan<byte> bytes, ref bool inTransaction, ref TransactionInfo transaction)
    {
        var message = new PgOutputReader(bytes);
        switch (message.Byte())
        {
            case PgOutputMessageType.Begin:
                inTransaction = true;
                transaction = BeginMessage.Read(ref message);
                return new SlotChange(SlotChangeKind.Begin, transaction);
            case PgOutputMessageType.Relation when relations is not null:
                relations.OnRelation(RelationMessage.Read(ref message));
                return null;
            case PgOutputMessageType.Insert when inTransaction && relations is not null:
                if (relations[InsertMessage.ReadRelationId(ref message)] is not { } layout)
                    return null;
                return new SlotChange(SlotChangeKind.Row, transaction, Row: OutboxRowReader.Read(ref message, layout));
            case PgOutputMessageType.Message when inTransaction:
                var (transactional, lsn, prefix) = LogicalMessage.ReadHeader(ref message);
                if (!transactional)
                    return null; // non-transactional messages are never relayed
                var kind = IsPrefix(prefix, options.MessagePrefix) ? SlotChangeKind.Message
                    : IsPrefix(prefix, options.SignalPrefix) ? SlotChangeKind.Signal
                    : (SlotChangeKind?)null;
                return kind is { } k ? new SlotChange(k, transaction, Message: message.Take(message.Int32()).ToArray(), Lsn: lsn) : null;
            case PgOutputMessageType.Commit when inTransaction:
                inTransaction = false;
                return new SlotChange(SlotChangeKind.Commit, transaction, Lsn: CommitMessage.ReadEndLsn(ref message));
            default:
                return null;
        }
    }

    /// <summary>The position of the last message the server sent (keepalives included).</summary>
    public ulong LastReceivedLsn => (ulong)connection.LastReceivedLsn;

    static bool IsPrefix(string prefix, string configured) => configured.Length > 0 && prefix == configured;
}
