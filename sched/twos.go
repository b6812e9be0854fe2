package sched

func init() { register("twos", func() scheduler { return twoChoices{} }) }

// twoChoices is ip_vs_twos.c, weighted random "power of two choices": two
// weighted random draws, the less loaded per weight wins.
type twoChoices struct{}

func (twoChoices) pick(e *env, ds []*Dest, _ Flow) *Dest {
	var choice1, choice2 *Dest
	var total uint64
	for _, d := range ds {
		if d.usable() {
			total += uint64(d.Weight)
			choice1 = d
		}
	}
	if choice1 == nil {
		return nil
	}
	// Inclusive of total, as the kernel's "% (total + 1)".
	total++
	r1 := int64(uint64(e.rand()) % total)
	r2 := int64(uint64(e.rand()) % total)
	var w1, w2 int32 = -1, -1
	var oh1, oh2 uint64
	for _, d := range ds {
		if !d.usable() {
			continue
		}
		r1 -= int64(d.Weight)
		r2 -= int64(d.Weight)
		if r1 <= 0 && w1 == -1 {
			choice1, w1, oh1 = d, d.Weight, d.overhead()
		}
		if r2 <= 0 && w2 == -1 {
			choice2, w2, oh2 = d, d.Weight, d.overhead()
		}
		if w1 != -1 && w2 != -1 {
			break
		}
	}
	// Draws are at most the total weight, so both walks always end on a
	// dest; the guard only keeps a broken invariant from panicking.
	if choice2 == nil || w1 == -1 {
		return choice1
	}
	// w2*oh1 > w1*oh2: choice1 is heavier per weight.
	if heavier(oh1, w1, oh2, w2) {
		return choice2
	}
	return choice1
}

func (twoChoices) update(*env, []*Dest, change) {}
