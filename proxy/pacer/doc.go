// Package pacer smooths the calls Portcullis sends to one upstream to a steady rate
// (calls per second) with go.uber.org/ratelimit, and bounds how long a call may wait for
// its turn: a call whose turn is further away than the wait budget is refused at once
// with ErrBusy instead of joining the queue, so a burst turns into fast 503s for the
// excess rather than a pile of requests hanging until they time out.
//
// The uber limiter hands out evenly spaced slots and sleeps until the slot arrives; it
// cannot say how long that will be. The pacer therefore estimates the wait before
// calling Take from the slot last handed out and the number of callers already queued
// (each queued caller holds the next slot): wait = last + (queued+1)*interval - now.
// The estimate is exact while calls arrive one at a time and off by at most one interval
// under races between callers that arrive together.
package pacer
