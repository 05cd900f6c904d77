using System.Runtime.CompilerServices;
using Cdc.Configuration;
using Cdc.Mapping;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using Npgsql.Replication.PgOutput.Messages;

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
/// </summary>
sealed class SlotReader(LogicalReplicationConnection connection, PostgresOptions options, OutboxRelations? relations)
{
    public async IAsyncEnumerable<SlotChange> ReadAsync([EnumeratorCancellation] CancellationToken ct)
    {
        var slot = new PgOutputReplicationSlot(options.Slot);
        var pgOptions = new PgOutputReplicationOptions(options.Publication, PgOutputProtocolVersion.V1, binary: true, messages: true);
        var inTransaction = false;
        var transaction = default(TransactionInfo);
        await foreach (var message in connection.StartReplication(slot, pgOptions, ct))
        {
            switch (message)
            {
                case BeginMessage begin:
                    inTransaction = true;
                    transaction = new TransactionInfo((ulong)begin.TransactionFinalLsn, begin.TransactionXid, begin.TransactionCommitTimestamp);
                    yield return new SlotChange(SlotChangeKind.Begin, transaction);
                    break;
                case RelationMessage relation when relations is not null:
                    relations.OnRelation(relation);
                    break;
                case InsertMessage insert when inTransaction && relations is not null && relations[insert.Relation.RelationId] is { } layout:
                    yield return new SlotChange(SlotChangeKind.Row, transaction, Row: await OutboxRowReader.ReadAsync(insert, layout, ct));
                    break;
                case LogicalDecodingMessage emitted when inTransaction && IsOutboxMessage(emitted):
                    yield return new SlotChange(SlotChangeKind.Message, transaction, Message: await ReadToEndAsync(emitted.Data, ct),
                        Lsn: (ulong)emitted.MessageLsn);
                    break;
                case LogicalDecodingMessage emitted when inTransaction && IsSignal(emitted):
                    yield return new SlotChange(SlotChangeKind.Signal, transaction, Message: await ReadToEndAsync(emitted.Data, ct),
                        Lsn: (ulong)emitted.MessageLsn);
                    break;
                case CommitMessage commit when inTransaction:
                    inTransaction = false;
                    yield return new SlotChange(SlotChangeKind.Commit, transaction, Lsn: (ulong)commit.TransactionEndLsn);
                    break;
            }
        }
    }

    /// <summary>The position of the last message the server sent (keepalives included).</summary>
    public ulong LastReceivedLsn => (ulong)connection.LastReceivedLsn;

    /// <summary>A transactional message with the configured prefix (non-transactional ones are never relayed).</summary>
    bool IsOutboxMessage(LogicalDecodingMessage message) =>
        (message.Flags & 1) == 1 && options.MessagePrefix.Length > 0 && message.Prefix == options.MessagePrefix;

    /// <summary>A transactional message with the configured signal prefix.</summary>
    bool IsSignal(LogicalDecodingMessage message) =>
        (message.Flags & 1) == 1 && options.SignalPrefix.Length > 0 && message.Prefix == options.SignalPrefix;

    static async Task<byte[]> ReadToEndAsync(Stream data, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        await data.CopyToAsync(buffer, ct);
        return buffer.ToArray();
    }
}
