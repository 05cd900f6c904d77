using Cdc.Consumer;
using Cdc.Outbox.V1;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Cdc.Samples.OrderSaga;

/// <summary>
/// Takes orders (<see cref="EventTypes.OrderPlaced"/>) and ends each one: cancelled when stock is rejected or the
/// payment fails, confirmed when the payment is captured.
/// </summary>
public sealed class OrdersService(NpgsqlDataSource dataSource, ILogger<OrdersService> logger, string schema = "orders")
    : SagaService(dataSource, schema)
{
    public const string Pending = "pending", Confirmed = "confirmed", Cancelled = "cancelled";

    public override IReadOnlyList<string> SubscribesTo(SagaTopics topics) => [topics.Stock, topics.Payments];

    protected override string TablesSql() => $"""
        CREATE TABLE IF NOT EXISTS "{Schema}".orders (
          id           uuid        PRIMARY KEY,
          customer     text        NOT NULL,
          sku          text        NOT NULL,
          quantity     int         NOT NULL CHECK (quantity > 0),
          amount_cents bigint      NOT NULL,
          status       text        NOT NULL CHECK (status IN ('{Pending}', '{Confirmed}', '{Cancelled}')),
          reason       text,
          placed_at    timestamptz NOT NULL DEFAULT now(),
          updated_at   timestamptz NOT NULL DEFAULT now()
        );
        """;

    /// <summary>The saga's first step: the order row and its OrderPlaced event, in one transaction.</summary>
    public async Task<Guid> PlaceOrderAsync(string customer, string sku, int quantity, long amountCents, CancellationToken ct = default)
    {
        var orderId = Guid.CreateVersion7();
        await using var connection = await DataSource.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        await using (var insert = Command(tx,
                         $"""INSERT INTO "{Schema}".orders (id, customer, sku, quantity, amount_cents, status) VALUES ($1, $2, $3, $4, $5, '{Pending}')""",
                         orderId, customer, sku, quantity, amountCents))
            await insert.ExecuteNonQueryAsync(ct);
        await EmitAsync(tx, AggregateTypes.Order, orderId, new OrderPlaced(orderId, customer, sku, quantity, amountCents), ct);
        await tx.CommitAsync(ct);
        logger.LogDebug("Order {OrderId} placed: {Quantity} x {Sku} for {AmountCents} cents", orderId, quantity, sku, amountCents);
        return orderId;
    }

    public override Task HandleAsync(OutboxEvent evt, NpgsqlTransaction tx, CancellationToken ct) => evt.EventType switch
    {
        EventTypes.StockRejected => CancelAsync(tx, evt.PayloadAs<StockRejected>().OrderId, "out of stock", ct),
        EventTypes.PaymentFailed => CancelAsync(tx, evt.PayloadAs<PaymentFailed>().OrderId, "payment failed", ct),
        EventTypes.PaymentCaptured => ConfirmAsync(tx, evt.PayloadAs<PaymentCaptured>().OrderId, ct),
        _ => Task.CompletedTask, // StockReserved: nothing to do until the payment says how it went
    };

    async Task ConfirmAsync(NpgsqlTransaction tx, Guid orderId, CancellationToken ct)
    {
        if (await EndAsync(tx, orderId, Confirmed, null, ct))
            await EmitAsync(tx, AggregateTypes.Order, orderId, new OrderConfirmed(orderId), ct);
    }

    async Task CancelAsync(NpgsqlTransaction tx, Guid orderId, string reason, CancellationToken ct)
    {
        if (await EndAsync(tx, orderId, Cancelled, reason, ct))
            await EmitAsync(tx, AggregateTypes.Order, orderId, new OrderCancelled(orderId, reason), ct);
    }

    /// <summary>Moves a pending order to its end state; false when it had already ended (an order ends once).</summary>
    async Task<bool> EndAsync(NpgsqlTransaction tx, Guid orderId, string status, string? reason, CancellationToken ct)
    {
        await using var update = Command(tx,
            $"""UPDATE "{Schema}".orders SET status = $2, reason = $3, updated_at = now() WHERE id = $1 AND status = '{Pending}'""",
            orderId, status, (object?)reason ?? DBNull.Value);
        var ended = await update.ExecuteNonQueryAsync(ct) == 1;
        if (ended)
            logger.LogDebug("Order {OrderId} {Status} {Reason}", orderId, status, reason);
        else
            logger.LogWarning("Order {OrderId} is not pending; not {Status}", orderId, status);
        return ended;
    }
}
