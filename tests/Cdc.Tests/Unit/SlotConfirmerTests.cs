using Cdc.Positions;

namespace Cdc.Tests.Unit;

/// <summary>The slot's confirmed position only moves forward, one update at a time, from where the slot already is.</summary>
public class SlotConfirmerTests
{
    [Fact]
    public async Task Never_sends_a_position_at_or_below_the_slots_own_or_the_last_sent()
    {
        var sent = new List<ulong>();
        var confirmer = new SlotConfirmer((lsn, _) => { sent.Add(lsn); return Task.CompletedTask; }, slotConfirmedLsn: 1000);

        Assert.False(await confirmer.ConfirmAsync(0, CancellationToken.None)); // a new session's tracker starts at 0
        Assert.False(await confirmer.ConfirmAsync(1000, CancellationToken.None));
        Assert.False(confirmer.Advanced);
        Assert.True(await confirmer.ConfirmAsync(1500, CancellationToken.None));
        Assert.False(await confirmer.ConfirmAsync(1200, CancellationToken.None));
        Assert.True(await confirmer.ConfirmAsync(1600, CancellationToken.None));
        Assert.Equal([1500UL, 1600UL], sent);
        Assert.Equal(1600UL, confirmer.Confirmed);
        Assert.True(confirmer.Advanced);
    }

    [Fact]
    public async Task Concurrent_confirms_are_sent_one_at_a_time_and_the_slot_never_moves_back()
    {
        var inFlight = 0;
        var sent = new List<ulong>();
        var confirmer = new SlotConfirmer(async (lsn, _) =>
        {
            Assert.Equal(1, Interlocked.Increment(ref inFlight));
            await Task.Delay(2);
            lock (sent)
                sent.Add(lsn);
            Interlocked.Decrement(ref inFlight);
        }, slotConfirmedLsn: 0);

        // The periodic confirm and the final one at shutdown racing, with positions arriving out of order.
        await Task.WhenAll(Enumerable.Range(1, 200).Select(i => Task.Run(() => confirmer.ConfirmAsync((ulong)((i * 7919) % 200 + 1), CancellationToken.None))));

        Assert.Equal(sent.Order(), sent);
        Assert.Equal(sent.Distinct().Count(), sent.Count);
        Assert.Equal(200UL, confirmer.Confirmed);
    }

    [Fact]
    public async Task A_failed_send_leaves_the_position_where_it_was_so_it_is_sent_again()
    {
        var fail = true;
        var confirmer = new SlotConfirmer((_, _) => fail ? Task.FromException(new IOException("connection reset")) : Task.CompletedTask, 10);
        await Assert.ThrowsAsync<IOException>(() => confirmer.ConfirmAsync(20, CancellationToken.None));
        Assert.Equal(10UL, confirmer.Confirmed);
        fail = false;
        Assert.True(await confirmer.ConfirmAsync(20, CancellationToken.None));
    }
}
