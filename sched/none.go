package sched

func init() { register("none", func() scheduler { return noScheduler{} }) }

// noScheduler is ipvsadm's "none": accepted, never picks a destination
// (only persistence templates could, and none are ever created).
type noScheduler struct{}

func (noScheduler) pick(*env, []*Dest, Flow) *Dest { return nil }
func (noScheduler) update(*env, []*Dest, change)   {}
