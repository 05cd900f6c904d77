using Cdc.Consumer;
using Cdc.Outbox.V1;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Cdc.Samples.OrderSaga;

/// <summary>
/// Charges orders whose stock is reserved. The card network is a deterministic rule so tests know the outcome:
/// an amount whose cents end in 7 is declined.
/// </summary>
public sealed class PaymentsService(NpgsqlDataSource dataSource, ILogger<PaymentsService> logger, string schema = "payments")
    : SagaService(dataSource, schema)
{
    public const string Captured = "captured", Failed = "failed";

    public static bool IsDeclined(long amountCents) => amountCents % 10 == 7;

    public override IReadOnlyList<string> SubscribesTo(SagaTopics topics) => [topics.Stock];

    protected override string TablesSql() => $"""
        CREATE TABLE IF NOT EXISTS "{Schema}".payments (
          order_id     uuid   PRIMARY KEY,
          amount_cents bigint NOT NULL,
          status       text   NOT NULL CHECK (status IN ('{Captured}', '{Failed}')),
          reason       text
        );
        """;

    public override Task HandleAsync(OutboxEvent evt, NpgsqlTransaction tx, CancellationToken ct) => evt.EventType switch
    {
        EventTypes.StockReserved => ChargeAsync(tx, evt.PayloadAs<StockReserved>(), ct),
        _ => Task.CompletedTask,
    };

    async Task ChargeAsync(NpgsqlTransaction tx, StockReserved order, CancellationToken ct)
    {
        var declined = IsDeclined(order.AmountCents);
        await using (var record = Command(tx, $"""INSERT INTO "{Schema}".payments (order_id, amount_cents, status, reason) VALUES ($1, $2, $3, $4)""",
                         order.OrderId, order.AmountCents, declined ? Failed : Captured, declined ? "card declined" : DBNull.Value))
            await record.ExecuteNonQueryAsync(ct);
        logger.LogDebug("Order {OrderId}: payment of {AmountCents} cents {Status}", order.OrderId, order.AmountCents, declined ? Failed : Captured);
        if (declined)
            await EmitAsync(tx, AggregateTypes.Payment, order.OrderId, new PaymentFailed(order.OrderId, order.AmountCents, "card declined"), ct);
        else
            await EmitAsync(tx, AggregateTypes.Payment, order.OrderId, new PaymentCaptured(order.OrderId, order.AmountCents), ct);
    }
}
