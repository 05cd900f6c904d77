using System.Text;
using Cdc.Configuration;
using Cdc.Embedded;
using Cdc.Outbox.V1;
using Cdc.Positions;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// Adversarial review of issue 10 (the table as a source): re-publish signals, lost slots and the checkpoint, the
/// initial snapshot. Each test shows a problem of the code it was written against.
/// </summary>
public class TableSourceAdversaryTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    async Task SignalAsync(OutboxHarness outbox, string json) => await outbox.WriteAsync([], commit: true,
        extraSql: $"SELECT pg_logical_emit_message(true, '{outbox.Options.Postgres.SignalPrefix}', '{json.Replace("'", "''")}')");

    /// <summary>
    /// The contract: malformed signals are logged and skipped. A signal whose "action" is valid JSON but not a string
    /// makes <c>JsonElement.GetString()</c> throw InvalidOperationException, which the parser does not catch: the reading
    /// loop fails, the session restarts from the slot's confirmed position, reads the same signal again, and fails again,
    /// for ever. Nothing after the signal is ever relayed.
    /// </summary>
    [Theory]
    [InlineData("""{"slot":"{slot}","action":1,"ids":["00000000-0000-0000-0000-000000000000"]}""")]
    [InlineData("""{"slot":"{slot}","action":{"republish":true}}""")]
    [InlineData("""{"slot":"{slot}","action":["republish"]}""")]
    public async Task A_signal_whose_action_is_not_a_string_is_skipped_and_does_not_stop_the_stream_for_ever(string signal)
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"],
            configure: o => o.Postgres.SignalPrefix = "cdc.signal." + o.Postgres.Slot);
        await outbox.StartRelayAsync();
        await SignalAsync(outbox, signal.Replace("{slot}", outbox.Options.Postgres.Slot));
        var after = new TestEvent("order", "o-1", "AfterTheSignal");
        var last = await outbox.CommitAsync(after);

        await outbox.WaitForConfirmedAsync(last, TimeSpan.FromSeconds(45));
        Assert.Contains(after.Id.ToString(), DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
        Assert.Contains(outbox.Logs, l => l.Contains("Skipping a malformed signal"));
    }

    /// <summary>
    /// A signal naming rows by id finds them by comparing <c>id::text</c> with the strings given; PostgreSQL writes uuids
    /// in lower case, so a signal with the same uuids in upper case (as .NET's Guid.ToString("D").ToUpper(), SQL Server
    /// or many UIs write them; RFC 4122 says input is case-insensitive) re-publishes nothing, and says "Re-published 0 rows".
    /// </summary>
    [Fact]
    public async Task A_signal_naming_uuids_in_upper_case_re_publishes_those_rows()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"],
            configure: o => o.Postgres.SignalPrefix = "cdc.signal." + o.Postgres.Slot);
        await outbox.StartRelayAsync();
        var a = new TestEvent("order", "o-1", "A");
        await outbox.CommitAsync(a);
        await SignalAsync(outbox, $$"""{"slot":"{{outbox.Options.Postgres.Slot}}","action":"republish","ids":["{{a.Id.ToString().ToUpperInvariant()}}"]}""");
        var last = await outbox.CommitAsync(new TestEvent("order", "o-2", "Last"));
        await outbox.WaitForConfirmedAsync(last, Timeout);

        var republished = outbox.ReadTopic(outbox.Topic("order"))
            .Where(r => OutboxEvent.Parser.ParseFrom(r.Message.Value).Source.Origin == Origin.Republish)
            .Select(r => DeliveryAssert.Header(r, "id")).ToList();
        Assert.Equal([a.Id.ToString()], republished);
    }
}
