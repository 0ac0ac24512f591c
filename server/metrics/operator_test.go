package metrics

import (
	"reflect"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestWalkErrorCodes: every non-zero ErrorCode of a response is found, at
// the top level and nested in slices of structs, and none in byte
// slices; walking a response allocates nothing (it runs for every
// response: the field lookups are planned once per type).
func TestWalkErrorCodes(t *testing.T) {
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 12
	resp.ErrorCode = 1
	for ti := range 2 {
		st := kmsg.NewFetchResponseTopic()
		for pi := range 3 {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.ErrorCode = int16(10*ti + pi)
			sp.RecordBatches = []byte{0, 1, 2}
			sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: 5}}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	var got []int16
	walkErrorCodes(reflect.ValueOf(resp), func(c int16) { got = append(got, c) }, 0)
	if want := []int16{1, 1, 2, 10, 11, 12}; !slices.Equal(got, want) {
		t.Fatalf("codes %v, want %v", got, want)
	}

	ct := kmsg.NewPtrCreateTopicsResponse()
	ct.Version = 5
	for i := range 3 {
		r := kmsg.NewCreateTopicsResponseTopic()
		r.ErrorCode = int16(36 + i)
		ct.Topics = append(ct.Topics, r)
	}
	got = got[:0]
	walkErrorCodes(reflect.ValueOf(ct), func(c int16) { got = append(got, c) }, 0)
	if want := []int16{36, 37, 38}; !slices.Equal(got, want) {
		t.Fatalf("create topics codes %v, want %v", got, want)
	}

	n := 0
	count := func(int16) { n++ }
	if a := testing.AllocsPerRun(100, func() { walkErrorCodes(reflect.ValueOf(resp), count, 0) }); a != 0 {
		t.Fatalf("walking a fetch response allocates %.1f times", a)
	}
}

// BenchmarkWalkErrorCodes walks a 2-topic, 3-partition fetch response, as
// the error metrics do for every fetch answered.
func BenchmarkWalkErrorCodes(b *testing.B) {
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = 12
	for range 2 {
		st := kmsg.NewFetchResponseTopic()
		for range 3 {
			st.Partitions = append(st.Partitions, kmsg.NewFetchResponseTopicPartition())
		}
		resp.Topics = append(resp.Topics, st)
	}
	n := 0
	for b.Loop() {
		walkErrorCodes(reflect.ValueOf(resp), func(int16) { n++ }, 0)
	}
}

// TestFetchErrorFree: the reflection-free check of fetch responses sees
// every ErrorCode field the generic walk would (the set of such fields in
// kmsg's FetchResponse is checked, so a new one fails this test).
func TestFetchErrorFree(t *testing.T) {
	var paths []string
	var collect func(tp reflect.Type, path string, depth int)
	collect = func(tp reflect.Type, path string, depth int) {
		if depth > 6 {
			return
		}
		switch tp.Kind() {
		case reflect.Pointer, reflect.Slice:
			collect(tp.Elem(), path, depth+1)
		case reflect.Struct:
			plan := errWalkPlanOf(tp)
			if plan.code >= 0 {
				paths = append(paths, path+"ErrorCode")
			}
			for _, i := range plan.nested {
				collect(tp.Field(i).Type, path+tp.Field(i).Name+".", depth+1)
			}
		}
	}
	collect(reflect.TypeOf(&kmsg.FetchResponse{}), "", 0)
	if want := []string{"ErrorCode", "Topics.Partitions.ErrorCode"}; !slices.Equal(paths, want) {
		t.Fatalf("ErrorCode fields of FetchResponse: %v; fetchErrorFree checks %v", paths, want)
	}

	resp := kmsg.NewPtrFetchResponse()
	for range 2 {
		st := kmsg.NewFetchResponseTopic()
		st.Partitions = []kmsg.FetchResponseTopicPartition{kmsg.NewFetchResponseTopicPartition(), kmsg.NewFetchResponseTopicPartition()}
		resp.Topics = append(resp.Topics, st)
	}
	if !fetchErrorFree(resp) {
		t.Fatal("a response without errors is not error-free")
	}
	resp.Topics[1].Partitions[1].ErrorCode = 1
	if fetchErrorFree(resp) {
		t.Fatal("a partition error is missed")
	}
	resp.Topics[1].Partitions[1].ErrorCode = 0
	resp.ErrorCode = 70
	if fetchErrorFree(resp) {
		t.Fatal("a top-level error is missed")
	}
}
