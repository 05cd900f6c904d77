using Npgsql;

namespace Cdc.Consumer;

/// <summary>What became of an event handed to the <see cref="InboxProcessor"/>.</summary>
public enum InboxOutcome
{
    /// <summary>The handler ran and its writes committed together with the inbox entry.</summary>
    Processed,
    /// <summary>The inbox already had the event: the handler did not run.</summary>
    Duplicate,
}

/// <summary>
/// Processes one event exactly once as far as the database can tell: in ONE transaction, the inbox entry and the
/// handler's writes; an event already in the inbox is skipped. The Kafka offset is the caller's to commit, after this returns.
/// </summary>
public sealed class InboxProcessor(NpgsqlDataSource dataSource, Inbox inbox)
{
    public Inbox Inbox { get; } = inbox;

    /// <summary>
    /// Runs <paramref name="handler"/> with the transaction unless the inbox has <paramref name="eventId"/>. When the
    /// handler throws, everything rolls back (the inbox entry too), so the event can be tried again.
    /// </summary>
    public async Task<InboxOutcome> ProcessAsync(
        string eventId, Func<NpgsqlTransaction, CancellationToken, Task> handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        if (!await Inbox.TryRecordAsync(transaction, eventId, cancellationToken))
        {
            await transaction.RollbackAsync(CancellationToken.None);
            return InboxOutcome.Duplicate;
        }
        await handler(transaction, cancellationToken);
        // Not cancellable: once the handler is done, a cancellation here would only make the outcome unknown.
        await transaction.CommitAsync(CancellationToken.None);
        return InboxOutcome.Processed;
    }
}
