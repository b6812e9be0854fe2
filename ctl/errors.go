package ctl

import "errors"

// Sentinels that callers branch on. Each has a stable code on the wire and
// ipvsadm's message for the operator (see Message).
var (
	ErrServiceExists     = errors.New("service already exists")
	ErrNoService         = errors.New("no such service")
	ErrServiceNotDefined = errors.New("service not defined")
	ErrDestExists        = errors.New("destination already exists")
	ErrNoDest            = errors.New("no such destination")
	ErrNoScheduler       = errors.New("scheduler not found")
	ErrRange             = errors.New("numerical result out of range")
	ErrInvalid           = errors.New("invalid operation")
	ErrNotSupported      = errors.New("not supported")
	ErrFull              = errors.New("table full")
	ErrDaemonRunning     = errors.New("sync daemon already running")
	ErrNoDaemon          = errors.New("no sync daemon running")
	ErrNoDevice          = errors.New("no such device")
)

// errCodes maps each sentinel to its wire code and ipvsadm's text
// (libipvs.c ipvs_strerror); xvsadm prints the text and exits 255.
var errCodes = []struct {
	err  error
	code string
	msg  string
}{
	{ErrServiceExists, "service_exists", "Service already exists"},
	{ErrNoService, "no_service", "No such service"},
	{ErrServiceNotDefined, "service_not_defined", "Service not defined"},
	{ErrDestExists, "dest_exists", "Destination already exists"},
	{ErrNoDest, "no_dest", "No such destination"},
	{ErrNoScheduler, "no_scheduler", "Scheduler or persistence engine not found"},
	{ErrRange, "range", "Numerical result out of range"},
	{ErrInvalid, "invalid", "Invalid operation.  Possibly wrong module version, address not unicast, ..."},
	{ErrNotSupported, "not_supported", "Operation not supported"},
	{ErrFull, "full", "Memory allocation problem"},
	{ErrDaemonRunning, "daemon_running", "Daemon has already run"},
	{ErrNoDaemon, "no_daemon", "No daemon is running"},
	{ErrNoDevice, "no_device", "No such device"},
}

// Code returns the stable wire code of err's sentinel, or "internal".
func Code(err error) string {
	for _, c := range errCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

// Message returns ipvsadm's text for err's sentinel, or err's own text.
// An unknown sync interface also names the interface, which ipvsadm
// leaves to the kernel log.
func Message(err error) string {
	var de *DeviceError
	if errors.As(err, &de) {
		return "No such device: " + de.Error()
	}
	for _, c := range errCodes {
		if errors.Is(err, c.err) {
			return c.msg
		}
	}
	return err.Error()
}

// sentinel returns the sentinel for a wire code, or nil.
func sentinel(code string) error {
	for _, c := range errCodes {
		if c.code == code {
			return c.err
		}
	}
	return nil
}
