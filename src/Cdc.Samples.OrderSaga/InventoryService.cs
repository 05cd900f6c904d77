using Cdc.Consumer;
using Cdc.Outbox.V1;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Cdc.Samples.OrderSaga;

/// <summary>
/// Reserves stock for placed orders (<see cref="EventTypes.StockReserved"/> or <see cref="EventTypes.StockRejected"/>),
/// keeps it when the payment is captured, and releases it when the payment fails: the saga's compensation.
/// </summary>
public sealed class InventoryService(NpgsqlDataSource dataSource, ILogger<InventoryService> logger, string schema = "inventory")
    : SagaService(dataSource, schema)
{
    public const string Reserved = "reserved", Committed = "committed", Released = "released";

    public override IReadOnlyList<string> SubscribesTo(SagaTopics topics) => [topics.Orders, topics.Payments];

    protected override string TablesSql() => $"""
        CREATE TABLE IF NOT EXISTS "{Schema}".stock (
          sku       text PRIMARY KEY,
          available int  NOT NULL CHECK (available >= 0)
        );
        CREATE TABLE IF NOT EXISTS "{Schema}".reservations (
          order_id uuid PRIMARY KEY,
          sku      text NOT NULL REFERENCES "{Schema}".stock (sku),
          quantity int  NOT NULL,
          status   text NOT NULL CHECK (status IN ('{Reserved}', '{Committed}', '{Released}'))
        );
        """;

    public async Task AddStockAsync(string sku, int quantity, CancellationToken ct = default)
    {
        await using var command = DataSource.CreateCommand(
            $"""INSERT INTO "{Schema}".stock (sku, available) VALUES ($1, $2) ON CONFLICT (sku) DO UPDATE SET available = stock.available + $2""");
        command.Parameters.AddWithValue(sku);
        command.Parameters.AddWithValue(quantity);
        await command.ExecuteNonQueryAsync(ct);
    }

    public override Task HandleAsync(OutboxEvent evt, NpgsqlTransaction tx, CancellationToken ct) => evt.EventType switch
    {
        EventTypes.OrderPlaced => ReserveAsync(tx, evt.PayloadAs<OrderPlaced>(), ct),
        EventTypes.PaymentCaptured => KeepAsync(tx, evt.PayloadAs<PaymentCaptured>().OrderId, ct),
        EventTypes.PaymentFailed => ReleaseAsync(tx, evt.PayloadAs<PaymentFailed>().OrderId, ct),
        _ => Task.CompletedTask,
    };

    async Task ReserveAsync(NpgsqlTransaction tx, OrderPlaced order, CancellationToken ct)
    {
        // One statement checks and takes the stock, so concurrent reservations cannot oversell.
        await using (var take = Command(tx, $"""UPDATE "{Schema}".stock SET available = available - $2 WHERE sku = $1 AND available >= $2""",
                         order.Sku, order.Quantity))
        {
            if (await take.ExecuteNonQueryAsync(ct) == 0)
            {
                logger.LogDebug("Order {OrderId}: {Quantity} x {Sku} not available", order.OrderId, order.Quantity, order.Sku);
                await EmitAsync(tx, AggregateTypes.Stock, order.OrderId, new StockRejected(order.OrderId, order.Sku, order.Quantity, "out of stock"), ct);
                return;
            }
        }
        await using (var reserve = Command(tx, $"""INSERT INTO "{Schema}".reservations (order_id, sku, quantity, status) VALUES ($1, $2, $3, '{Reserved}')""",
                         order.OrderId, order.Sku, order.Quantity))
            await reserve.ExecuteNonQueryAsync(ct);
        await EmitAsync(tx, AggregateTypes.Stock, order.OrderId, new StockReserved(order.OrderId, order.Sku, order.Quantity, order.AmountCents), ct);
    }

    async Task KeepAsync(NpgsqlTransaction tx, Guid orderId, CancellationToken ct)
    {
        await using var keep = Command(tx, $"""UPDATE "{Schema}".reservations SET status = '{Committed}' WHERE order_id = $1 AND status = '{Reserved}'""", orderId);
        await keep.ExecuteNonQueryAsync(ct);
    }

    /// <summary>The compensation: the payment failed, so the reserved stock is available again.</summary>
    async Task ReleaseAsync(NpgsqlTransaction tx, Guid orderId, CancellationToken ct)
    {
        await using var release = Command(tx, $"""
            WITH released AS (
              UPDATE "{Schema}".reservations SET status = '{Released}' WHERE order_id = $1 AND status = '{Reserved}' RETURNING sku, quantity)
            UPDATE "{Schema}".stock s SET available = s.available + r.quantity FROM released r WHERE s.sku = r.sku
            RETURNING r.sku, r.quantity
            """, orderId);
        await using var reader = await release.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct))
            return;
        var (sku, quantity) = (reader.GetString(0), reader.GetInt32(1));
        await reader.CloseAsync();
        logger.LogDebug("Order {OrderId}: released {Quantity} x {Sku}", orderId, quantity, sku);
        await EmitAsync(tx, AggregateTypes.Stock, orderId, new StockReleased(orderId, sku, quantity), ct);
    }
}
