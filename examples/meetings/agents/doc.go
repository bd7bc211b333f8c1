// Package agents does the AI work of the meeting pipeline with no network
// and no model: it reads transcripts (plain "Speaker: words" lines or WebVTT
// with voice tags), summarizes them by picking sentences, finds action
// items with their owners and due dates, derives project signals (decisions,
// risks, blockers), answers questions by quoting, proposes next steps,
// writes Notion pages as JSON files and the weekly report as Markdown.
//
// Each agent sits behind a one-method interface (Transcriber, Summarizer,
// TaskExtractor, Analyst, Responder, Suggester, NotionClient, Reporter), so
// that a real speech-to-text service, an LLM or the Notion API can take its
// place without touching the pipeline.
package agents
