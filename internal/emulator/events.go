package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Events: POST /api/v1/events, Datadog's API for posting an event to the
// event stream (authenticated by the API key alone; no recording, so its
// answers and limits follow the specification: title and text required,
// text up to 4000 characters, aggregation_key up to 100, date_happened no
// older than 18 hours).

// Event is an event posted to the organisation.
type Event struct {
	ID             int64     `json:"id"`
	Title          string    `json:"title"`
	Text           string    `json:"text"`
	Tags           []string  `json:"tags"`
	AlertType      string    `json:"alert_type"`
	Priority       string    `json:"priority"`
	AggregationKey string    `json:"aggregation_key,omitempty"`
	SourceTypeName string    `json:"source_type_name,omitempty"`
	Host           string    `json:"host,omitempty"`
	DateHappened   time.Time `json:"date_happened"`
}

const (
	maxEventText         = 4000
	maxAggregationKey    = 100
	maxEventAge          = 18 * time.Hour
	maxEventsKept        = 10000 // the oldest are dropped past it
	defaultEventAlert    = "info"
	defaultEventPriority = "normal"
)

var (
	eventAlertTypes = []string{"error", "warning", "info", "success", "user_update", "recommendation", "snapshot"}
	eventPriorities = []string{"normal", "low"}
)

// eventRequest is the body of POST /api/v1/events (EventCreateRequest).
type eventRequest struct {
	Title          *string  `json:"title"`
	Text           *string  `json:"text"`
	Tags           []string `json:"tags"`
	AlertType      string   `json:"alert_type"`
	Priority       *string  `json:"priority"`
	AggregationKey string   `json:"aggregation_key"`
	SourceTypeName string   `json:"source_type_name"`
	Host           string   `json:"host"`
	DeviceName     string   `json:"device_name"`
	DateHappened   *int64   `json:"date_happened"`
	RelatedEventID *int64   `json:"related_event_id"`
}

func (e *Emulator) createEvent(r *request) response {
	var body eventRequest
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		return errorResponse(http.StatusBadRequest, "Invalid JSON body: "+err.Error())
	}
	now := e.now()
	ev := Event{Tags: body.Tags, AlertType: body.AlertType, AggregationKey: body.AggregationKey,
		SourceTypeName: body.SourceTypeName, Host: body.Host, DateHappened: now.Truncate(time.Second)}
	if ev.Tags == nil {
		ev.Tags = []string{}
	}
	if ev.AlertType == "" {
		ev.AlertType = defaultEventAlert
	}
	ev.Priority = defaultEventPriority
	if body.Priority != nil {
		ev.Priority = *body.Priority
	}
	switch {
	case body.Title == nil || *body.Title == "":
		return errorResponse(http.StatusBadRequest, "Event title is required")
	case body.Text == nil:
		return errorResponse(http.StatusBadRequest, "Event text is required")
	case utf8.RuneCountInString(*body.Text) > maxEventText:
		return errorResponse(http.StatusBadRequest, fmt.Sprintf("Event text is limited to %d characters", maxEventText))
	case utf8.RuneCountInString(body.AggregationKey) > maxAggregationKey:
		return errorResponse(http.StatusBadRequest, fmt.Sprintf("aggregation_key is limited to %d characters", maxAggregationKey))
	case !slices.Contains(eventAlertTypes, ev.AlertType):
		return errorResponse(http.StatusBadRequest, fmt.Sprintf("Invalid alert_type %q", ev.AlertType))
	case !slices.Contains(eventPriorities, ev.Priority):
		return errorResponse(http.StatusBadRequest, fmt.Sprintf("Invalid priority %q", ev.Priority))
	}
	if body.DateHappened != nil {
		ev.DateHappened = time.Unix(*body.DateHappened, 0).UTC()
		if now.Sub(ev.DateHappened) > maxEventAge {
			return errorResponse(http.StatusBadRequest, "date_happened is limited to events no older than 18 hours")
		}
	}
	ev.Title, ev.Text = *body.Title, *body.Text
	e.org.EventSeq++
	ev.ID = e.org.EventSeq
	e.org.Events = append(e.org.Events, ev)
	if len(e.org.Events) > maxEventsKept {
		e.org.Events = slices.Delete(e.org.Events, 0, len(e.org.Events)-maxEventsKept)
	}

	id := strconv.FormatInt(ev.ID, 10)
	return response{status: http.StatusAccepted, body: map[string]any{
		"status": "ok",
		"event": map[string]any{
			"id":            ev.ID,
			"id_str":        id,
			"title":         ev.Title,
			"text":          ev.Text,
			"date_happened": ev.DateHappened.Unix(),
			"alert_type":    ev.AlertType,
			"priority":      ev.Priority,
			"tags":          ev.Tags,
			"url":           "/event/event?id=" + id,
		},
	}}
}

// Events returns the events posted to the organisation, oldest first.
func (e *Emulator) Events() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Event, len(e.org.Events))
	for i, ev := range e.org.Events {
		out[i] = ev
		out[i].Tags = slices.Clone(ev.Tags)
	}
	return out
}
